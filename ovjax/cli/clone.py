"""`ovjax clone`: text -> speech in a reference speaker's tone colour (the OpenVoice pipeline)."""
from __future__ import annotations

from ovjax.cli import common
from ovjax.cli import tts as tts_command
from ovjax.errors import OvjaxError

ESPEAK = "espeak"
DEFAULT_VOICE = "en-us"


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "clone", parents=list(parents),
      help="text -> speech in a reference speaker's voice (base TTS + converter)",
      description="Instant voice cloning: a base speaker says the text, then the converter "
                  "moves it into the tone colour of the reference recordings (or of a saved "
                  "embedding). The base speaker's own embedding is its folder's *_se.pth file "
                  "for the style when there is one, otherwise extracted from its output. "
                  "With --base espeak[:VOICE] espeak-ng is the base speaker, so any language "
                  "espeak-ng speaks can be cloned into (the voice sets the language; "
                  "--language, --style and the noise options then do not apply).")
  p.add_argument("--converter", required=True, metavar="DIR",
                 help="converter folder: official (config.json + checkpoint.pth) or imported")
  p.add_argument("--base", required=True, metavar="DIR|espeak[:VOICE]",
                 help="base speaker TTS folder, or `espeak` (voice en-us) / `espeak:VOICE` "
                      "(e.g. espeak:fr, espeak:cmn) for espeak-ng; write ./espeak for a folder "
                      "of that name")
  target = p.add_mutually_exclusive_group(required=True)
  target.add_argument("--reference", nargs="+", metavar="REF",
                      help="recordings of the target speaker (embedding = mean over them)")
  target.add_argument("--target-se", metavar="SE", help="target embedding (.npy or .pth)")
  common.add_text_args(p)
  common.add_tts_args(p, espeak_note="; ignored with an espeak base")
  p.add_argument("--tau", type=common.option_type("tau"), default=0.3,
                 help="converter sampling temperature, 0 = deterministic (default: 0.3)")
  p.add_argument("--no-vad", action="store_true",
                 help="embed the references whole instead of their detected speech")
  p.add_argument("--out", required=True, metavar="OUT.wav",
                 help="output WAV (float32, at the converter's sampling rate)")
  p.set_defaults(run=run)


def espeak_voice(base: str) -> str | None:
  """The espeak-ng voice `--base` names, or None for a folder."""
  if base == ESPEAK:
    return DEFAULT_VOICE
  if base.startswith(ESPEAK + ":"):
    voice = base[len(ESPEAK) + 1:].strip().lower()  # espeak-ng voice ids are lower case.
    if not voice:
      raise OvjaxError(f"--base {base}: no voice after 'espeak:' (e.g. espeak:fr)")
    return voice
  return None


def check_espeak_text(text: str, voice: str) -> None:
  """Refuse text with nothing to say, as the model front ends do (TextError).

  espeak-ng reads a text of punctuation alone aloud by name ("... !!" -> "ellipsis
  exclamation"), so its audio cannot tell; its phonemes can, and they are cheap.
  """
  import warnings
  from ovjax import text as text_frontend
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Symbols missing from the default table do not matter here.
    text_frontend.text_to_sequence(text, voice, frontend="espeak")


def load_base_speaker(base_arg: str, style, language, text: str, progress):
  """`--base` as a base speaker, its style and language checked and `text` checked speakable on
  it before anything else runs: (base, style, language, a description for progress lines)."""
  voice = espeak_voice(base_arg)
  if voice is not None:
    from ovjax.api import EspeakSpeaker  # Deferred: imports JAX.
    try:
      base = EspeakSpeaker(voice)  # Checks the voice: TextError if espeak-ng has none.
    except OvjaxError as e:
      raise type(e)(f"--base {base_arg}: {e}") from None
    check_espeak_text(text, base.voice)
    if language is not None:
      progress(f"ignoring --language {language}: the espeak voice sets the language")
    progress(f"base speaker: espeak-ng voice {base.voice}")
    return base, "default", None, "text"
  base = common.load_base_tts(base_arg, progress, "--base")
  style = tts_command.resolve_style(base, style)
  language = tts_command.check_language(base, language)
  # Unspeakable text fails here, before the reference extraction and the synthesis.
  pieces = base.text_to_pieces(text, language)
  return base, style, language, f"{common.plural(len(pieces), 'piece')} ({language}, style {style})"


def run(args) -> int:
  progress = common.Progress(args)
  use_vad = not args.no_vad
  voice = espeak_voice(args.base)
  # Cheap checks first: a typo should not cost two checkpoint loads and a reference extraction.
  if voice is not None and args.style not in (None, "default"):
    raise OvjaxError(f"--style {args.style}: an espeak base speaker has no styles "
                     "(leave --style out)")
  out = common.check_output_file(args.out, ".wav")
  text = common.read_text(args)
  common.check_audio_inputs(args.reference or [])
  common.check_tone_color_inputs([args.target_se])

  base, style, language, what = load_base_speaker(args.base, args.style, args.language, text,
                                                   progress)
  converter = common.load_converter_folder(args.converter, progress, "--converter")

  if args.target_se is not None:
    target_se = converter.tone_color(args.target_se)
  else:
    progress(f"extracting target tone colour from "
             f"{common.plural(len(args.reference), 'reference')}")
    target_se = converter.extract_se(list(args.reference), use_vad=use_vad)
  se_file = None if voice is not None else base.tone_color_file(style)
  if se_file is not None:
    progress(f"source tone colour: {se_file}")

  progress(f"cloning {what}, speed {args.speed:g}, tau {args.tau:g}")
  from ovjax.api import clone
  from ovjax.audio.io import write_wav
  # The target embedding is passed in, so clone's `use_vad` only governs the base speaker's own
  # output: clean synthetic speech, embedded whole. VAD there can only fail ("no speech found",
  # e.g. on a short piece or an untrained model), and --no-vad is about the references.
  audio = clone(converter, base, None, text, speaker=style, language=language,
                speed=args.speed, tau=args.tau, target_se=target_se, use_vad=False,
                progress=progress, **common.tts_options(args))
  write_wav(out, audio, converter.sampling_rate)  # Atomic: temp file + rename.
  progress(f"wrote {out} ({len(audio) / converter.sampling_rate:.1f} s of audio in "
           f"{progress.elapsed:.1f} s)")
  return 0
