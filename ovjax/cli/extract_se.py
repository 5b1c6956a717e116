"""`ovjax extract-se`: the tone-colour embedding of one or more reference recordings -> .npy."""
from __future__ import annotations

from ovjax.cli import common


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "extract-se", parents=list(parents),
      help="tone-colour embedding of reference audio -> .npy",
      description="Extract the tone-colour (speaker) embedding of one or more reference "
                  "recordings: the mean over ~10 s speech segments found by voice activity "
                  "detection, or over whole files with --no-vad. Saved as a float32 [gin] .npy.")
  common.add_checkpoint_arg(p)
  p.add_argument("references", nargs="+", metavar="REF",
                 help="reference audio files (any format/rate libsndfile reads, e.g. wav, mp3)")
  p.add_argument("--out", required=True, metavar="SE.npy", help="where to save the embedding")
  p.add_argument("--no-vad", action="store_true",
                 help="embed each file whole instead of its detected speech segments")
  p.set_defaults(run=run)


def run(args) -> int:
  progress = common.Progress(args)
  # Cheap checks first: a typo should not cost a checkpoint load.
  out = common.check_output_file(args.out, ".npy")
  common.check_audio_inputs(args.references)
  converter = common.load_converter(args, progress)
  vad = "whole files" if args.no_vad else "speech segments (VAD)"
  progress(f"extracting tone colour of {common.plural(len(args.references), 'reference')} "
           f"from {vad}")
  se = converter.extract_se(list(args.references), use_vad=not args.no_vad)
  from ovjax.checkpoint.store import save_tone_color  # Already imported by the converter.
  save_tone_color(out, se)  # Atomic: temp file + rename.
  progress(f"wrote {out} ([{se.shape[0]}] embedding in {progress.elapsed:.1f} s)")
  return 0
