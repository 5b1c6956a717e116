"""`ovjax demo`: clone a voice on a fresh install, with what ships in the package."""
from __future__ import annotations

from pathlib import Path

from ovjax.cli import clone as clone_command
from ovjax.cli import common
from ovjax.errors import OvjaxError

DEFAULT_TEXT = ("The quick brown fox jumps over the lazy dog, and this is my voice, "
                "cloned in a few seconds.")


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "demo", parents=list(parents), help="clone a voice with the bundled demo model",
      description="A base speaker says a sentence, the converter moves it into the reference's "
                  "voice. With no options: the demo converter that ships with ovjax, espeak-ng "
                  "as the base speaker and a bundled reference recording (OpenVoice's "
                  "demo_speaker0.mp3, MIT). Writes base.wav, converted.wav and demo.png (mel "
                  "spectrograms) into --out-dir and prints the speaker similarity to the "
                  "reference before and after conversion. --converter/--base/--reference run "
                  "the same with the official checkpoints or any others.")
  p.add_argument("--converter", metavar="DIR",
                 help="converter folder (default: the bundled demo converter)")
  p.add_argument("--base", default="espeak", metavar="DIR|espeak[:VOICE]",
                 help="base speaker TTS folder or espeak[:VOICE] (default: espeak, en-us)")
  p.add_argument("--reference", nargs="+", metavar="REF",
                 help="recordings of the voice to clone (default: the bundled one)")
  p.add_argument("--text", default=DEFAULT_TEXT, help="what to say (default: a pangram)")
  p.add_argument("--out-dir", default=".", metavar="DIR",
                 help="where base.wav, converted.wav and demo.png go (default: .)")
  p.add_argument("--tau", type=common.option_type("tau"), default=0.3,
                 help="converter sampling temperature (default: 0.3)")
  p.add_argument("--seed", type=common.seed_type, default=0, help="seed of the sampling noise (default: 0)")
  p.set_defaults(run=run)


def run(args) -> int:
  progress = common.Progress(args)
  if not args.text.strip():
    raise OvjaxError("--text: empty text, nothing to speak")
  out_dir = Path(args.out_dir)
  if out_dir.exists() and not out_dir.is_dir():
    raise OvjaxError(f"--out-dir {out_dir}: exists and is not a folder")
  common.check_creatable_parent(out_dir / "base.wav", "--out-dir")
  from ovjax import assets
  references = list(args.reference) if args.reference else [assets.demo_reference()]
  common.check_audio_inputs(references)
  converter_dir = args.converter or assets.demo_converter()

  base, style, language, _ = clone_command.load_base_speaker(args.base, None, None, args.text,
                                                             progress)
  converter = common.load_converter_folder(converter_dir, progress, "--converter")

  from ovjax.api import clone
  from ovjax.audio.io import write_wav
  progress(f"cloning {', '.join(map(str, references))}")
  converted, spoken = clone(converter, base, references, args.text, speaker=style,
                            language=language, tau=args.tau, seed=args.seed, progress=progress,
                            return_base=True)
  paths = {"base": out_dir / "base.wav", "converted": out_dir / "converted.wav"}
  write_wav(paths["base"], spoken, converter.sampling_rate)
  write_wav(paths["converted"], converted, converter.sampling_rate)
  _report(paths, references, args.text, out_dir / "demo.png", progress)
  return 0


def _report(paths, references, text, png, progress) -> None:
  """The picture, and the harness's numbers when its speaker encoder's weights are here."""
  from ovjax.eval import harness
  from ovjax.eval import speaker_encoder
  item = harness.Item(id="demo", output=paths["converted"], source=paths["base"],
                      reference=tuple(Path(r) for r in references), text=text)
  evaluator = harness.Evaluator(asr=_has_asr(), plot_dir=png.parent)
  try:
    speaker_encoder.find_weights()
  except OvjaxError as e:
    Path(evaluator.plot(item)).replace(png)
    print(f"wrote {paths['base']}, {paths['converted']}, {png}")
    print(f"(no similarity numbers: {str(e).splitlines()[0]})")
    return
  row = evaluator.item(item)
  Path(row["plot"]).replace(png)
  print(f"wrote {paths['base']}, {paths['converted']}, {png}")
  print(f"similarity to the reference (resemblyzer cosine): "
        f"{row['sim_source_reference']:.3f} base speaker, "
        f"{row['sim_output_reference']:.3f} converted "
        f"({row['sim_output_reference'] - row['sim_source_reference']:+.3f})")
  if "wer_output" in row:
    print(f"word error rate (pocketsphinx): {row['wer_output']:.2f} converted, "
          f"{row['wer_source']:.2f} base speaker")


def _has_asr() -> bool:
  try:
    import jiwer  # noqa: F401
    import pocketsphinx  # noqa: F401
  except ImportError:
    return False
  return True
