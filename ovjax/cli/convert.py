"""`ovjax convert`: move a recording into another speaker's tone colour."""
from __future__ import annotations

from ovjax.cli import common


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "convert", parents=list(parents),
      help="convert speech to a reference speaker's tone colour",
      description="Convert SRC into the tone colour of the reference recordings (or of a saved "
                  "embedding). The source's own embedding is extracted from SRC unless "
                  "--source-se is given. Embeddings may be .npy or official torch .pth files.")
  common.add_checkpoint_arg(p)
  p.add_argument("--source", required=True, metavar="SRC", help="speech to convert")
  target = p.add_mutually_exclusive_group(required=True)
  target.add_argument("--reference", nargs="+", metavar="REF",
                      help="recordings of the target speaker (embedding = mean over them)")
  target.add_argument("--target-se", metavar="SE", help="target embedding (.npy or .pth)")
  p.add_argument("--source-se", metavar="SE",
                 help="source embedding (.npy or .pth); default: extracted from SRC")
  p.add_argument("--tau", type=common.option_type("tau"), default=0.3,
                 help="posterior sampling temperature, 0 = deterministic (default: 0.3)")
  p.add_argument("--seed", type=common.seed_type, default=0, help="seed of the sampling noise (default: 0)")
  p.add_argument("--no-vad", action="store_true",
                 help="extract embeddings from whole files instead of detected speech")
  p.add_argument("--out", required=True, metavar="OUT.wav",
                 help="output WAV (float32, at the model's sampling rate)")
  p.set_defaults(run=run)


def run(args) -> int:
  progress = common.Progress(args)
  use_vad = not args.no_vad
  # Cheap checks first: a typo should not cost a checkpoint load, let alone a conversion.
  out = common.check_output_file(args.out, ".wav")
  common.check_audio_inputs([args.source] + list(args.reference or []))
  common.check_tone_color_inputs([args.source_se, args.target_se])
  converter = common.load_converter(args, progress)

  # Validate everything small (embedding files, the source audio) before any model work.
  src_se = None if args.source_se is None else converter.tone_color(args.source_se)
  tgt_se = None if args.target_se is None else converter.tone_color(args.target_se)
  source = converter.load(args.source)
  seconds = len(source) / converter.sampling_rate

  if src_se is None:
    progress(f"extracting source tone colour from {args.source}")
    # From the path, not the loaded array, so VAD errors name the file.
    src_se = converter.extract_se([args.source], use_vad=use_vad)
  if tgt_se is None:
    progress(f"extracting target tone colour from "
             f"{common.plural(len(args.reference), 'reference')}")
    tgt_se = converter.extract_se(list(args.reference), use_vad=use_vad)

  progress(f"converting {args.source} ({seconds:.1f} s, tau {args.tau:g})")
  # convert() writes the WAV atomically, and only once the audio exists.
  wave = converter.convert(source, src_se, tgt_se, output_path=out, tau=args.tau, seed=args.seed)
  progress(f"wrote {out} ({len(wave) / converter.sampling_rate:.1f} s of audio in "
           f"{progress.elapsed:.1f} s)")
  return 0
