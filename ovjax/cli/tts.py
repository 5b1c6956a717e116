"""`ovjax tts`: text -> speech with a base speaker TTS (OpenVoice v1 `BaseSpeakerTTS`)."""
from __future__ import annotations

from ovjax.cli import common
from ovjax.errors import TextError


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "tts", parents=list(parents),
      help="text -> speech with a base speaker TTS folder",
      description="Speak TEXT with a base speaker TTS (an official OpenVoice v1 base folder, "
                  "config.json + checkpoint.pth, or one imported by `ovjax import-checkpoint`). "
                  "Long text is split into sentence pieces, each followed by 50 ms / speed of "
                  "silence, as the reference does.")
  p.add_argument("--checkpoint", required=True, metavar="DIR",
                 help="base speaker folder: official (config.json + checkpoint.pth) or imported")
  common.add_text_args(p)
  common.add_tts_args(p)
  p.add_argument("--out", required=True, metavar="OUT.wav",
                 help="output WAV (float32, at the model's sampling rate)")
  common.add_dtype_arg(p)
  p.set_defaults(run=run)


def resolve_style(tts, style: str | None) -> str:
  """The style to speak in; an unknown one fails here, naming the model's, before synthesis."""
  return tts.resolve_style(style)


def check_language(tts, language: str | None) -> str:
  """The language to speak, checked against the model's front end (one line naming the flag)."""
  try:
    return tts.resolve_language(language)
  except TextError as e:
    raise TextError(f"--{e}" if str(e).startswith("language") else f"--language: {e}") from None


def run(args) -> int:
  progress = common.Progress(args)
  # Cheap checks first: a typo should not cost a checkpoint load.
  out = common.check_output_file(args.out, ".wav")
  text = common.read_text(args)
  tts = common.load_base_tts(args.checkpoint, progress, "--checkpoint", dtype=args.dtype)
  style = resolve_style(tts, args.style)
  language = check_language(tts, args.language)
  # Splitting and the front end are fast and catch unspeakable text before the model runs.
  pieces = tts.text_to_pieces(text, language)
  progress(f"synthesising {common.plural(len(pieces), 'piece')} ({language}, style {style}, "
           f"speed {args.speed:g})")
  # What `synthesize` does for one text, with the pieces already made.
  from ovjax.api.tts import join_pieces
  from ovjax.audio.io import write_wav
  waves = tts.infer_ids(pieces, style, args.speed, **common.tts_options(args))
  audio = join_pieces(waves, tts.sampling_rate, args.speed)
  write_wav(out, audio, tts.sampling_rate)  # Atomic: temp file + rename.
  progress(f"wrote {out} ({len(audio) / tts.sampling_rate:.1f} s of audio in "
           f"{progress.elapsed:.1f} s)")
  return 0
