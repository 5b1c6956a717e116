"""Helpers shared by the `ovjax` subcommands (each a module of `ovjax.cli` with
`register(subparsers)` + `run(args) -> int`).

Nothing here imports JAX at module level: `ovjax --help` must stay instant, so the heavy
imports (`ovjax.api`, `ovjax.checkpoint.store`) happen inside each `run`. The helpers below do
the cheap up-front checks that let a bad invocation fail before seconds of model loading.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

from ovjax import batching, precision
from ovjax.errors import AudioError, CheckpointError, OvjaxError, TextError
from ovjax.fileio import require_regular_file


class Progress:
  """Short status lines on stderr (silenced by -q); also times the command for the summary."""

  def __init__(self, args):
    self.quiet = bool(getattr(args, "quiet", False))
    self.start = time.perf_counter()

  def __call__(self, message: str) -> None:
    if not self.quiet:
      print(message, file=sys.stderr, flush=True)

  @property
  def elapsed(self) -> float:
    return time.perf_counter() - self.start


def check_output_file(path, suffix: str, flag: str = "--out") -> Path:
  """Fail now, not after the compute, if `path` cannot become a `suffix` file.

  The library writes outputs atomically (temp file + rename) and creates missing parent folders,
  so what must hold is: not a directory, and the nearest existing ancestor is a writable folder.
  A symlink at `path` is fine, whatever it points to: the rename replaces the link itself.
  """
  path = Path(path)
  if path.suffix.lower() != suffix:
    raise OvjaxError(f"{flag} {path}: the output must be a {suffix} file")
  if path.is_dir() and not path.is_symlink():
    raise OvjaxError(f"{flag} {path}: is an existing directory")
  check_creatable_parent(path, flag)
  return path


def check_creatable_parent(path, flag: str) -> None:
  parent = Path(path).absolute().parent
  while not parent.exists():  # Terminates: the filesystem root exists.
    parent = parent.parent
  if not parent.is_dir():
    raise OvjaxError(f"{flag} {path}: {parent} is a file, not a directory")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise OvjaxError(f"{flag} {path}: cannot write in {parent} (permission denied)")


def check_audio_inputs(paths) -> None:
  """Existence and kind only (decoding needs the model's rate); same messages as `load_audio`."""
  for path in paths:
    path = Path(path)
    if not path.exists():
      raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
      raise AudioError(f"audio path is a directory, not a file: {path}")
    require_regular_file(path, f"audio file {path}", AudioError)  # A FIFO would block the read.


def check_tone_color_inputs(paths) -> None:
  for path in paths:
    if path is None:
      continue
    if not Path(path).exists():
      raise CheckpointError(f"{path}: no such tone-colour embedding file")
    require_regular_file(path, f"tone-colour embedding file {path}", CheckpointError)


def load_converter(args, progress: Progress):
  """The `--checkpoint` folder (official or imported) as a `ToneColorConverter`."""
  progress(f"loading checkpoint {args.checkpoint}")
  from ovjax.api import ToneColorConverter  # Deferred: imports JAX (seconds).
  return ToneColorConverter.from_pretrained(args.checkpoint)


def add_checkpoint_arg(parser) -> None:
  parser.add_argument("--checkpoint", required=True, metavar="DIR",
                      help="converter folder: official (config.json + checkpoint.pth) or "
                           "imported by `ovjax import-checkpoint`")


def plural(n: int, word: str) -> str:
  return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- numeric options -------------------------------------------------------------------------------
# Range checks live in the argparse types, like `convert --tau`: a bad number is a usage error
# (exit 2), caught before anything loads.


def number_type(low: float, high: float = float("inf"), low_open: bool = False):
  """An argparse type: a finite float in [low, high] (or (low, high] when low_open)."""

  def parse(text: str) -> float:
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
      lower = f"> {low:g}" if low_open else f">= {low:g}"
      bound = f"a finite number {lower}" + ("" if math.isinf(high) else f" and <= {high:g}")
      raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value

  parse.__name__ = "number"  # argparse names the type in "invalid number value" messages.
  return parse


def option_type(name: str):
  """An argparse type for the user number `name` of `batching.NUMBER_RANGES` (the range the API
  and batch jobs enforce too)."""

  def parse(text: str) -> float:
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"not a number: {batching.show(text)}")
    try:
      return batching.check_number(name, value, "", shown=text)
    except OvjaxError as e:
      raise argparse.ArgumentTypeError(str(e))

  parse.__name__ = "number"
  return parse


def seed_type(text: str) -> int:
  """An argparse type: a seed, an integer in [0, batching.SEED_LIMIT)."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"not an integer: {batching.show(text)}")
  try:
    return batching.check_seed(value, "")
  except OvjaxError as e:
    raise argparse.ArgumentTypeError(str(e).strip())


seed_type.__name__ = "seed"


# -- text-to-speech options (tts and clone) --------------------------------------------------------


def add_text_args(parser) -> None:
  text = parser.add_mutually_exclusive_group(required=True)
  text.add_argument("--text", metavar="TEXT", help="the text to speak")
  text.add_argument("--text-file", metavar="PATH", help="read the text from a UTF-8 file")


DTYPE_HELP = ("compute dtype of the conversion network and of the base TTS's synthesis stage "
              "(default: float32; bfloat16 is about 2x faster on CPUs with AVX512-BF16, "
              "38-49 dB SNR against float32; TTS durations stay float32)")


def add_dtype_arg(parser, help_text: str = DTYPE_HELP) -> None:
  """--dtype: one of `ovjax.precision.DTYPES`, float32 by default."""
  parser.add_argument("--dtype", choices=precision.DTYPES, default="float32", help=help_text)


def add_tts_args(parser, espeak_note: str = "") -> None:
  """The base speaker's options, with the reference's defaults."""
  parser.add_argument("--language", metavar="LANG",
                      help="English or Chinese for the official (cjke) models, an espeak-ng "
                           "language for espeak models (default: the model's, English for the "
                           f"official ones){espeak_note}")
  parser.add_argument("--style", metavar="NAME",
                      help="speaking style of the base speaker, e.g. default, whispering, "
                           "cheerful, sad (default: 'default')")
  parser.add_argument("--speed", type=option_type("speed"), default=1.0,
                      help="speaking rate, in [0.1, 10] (default: 1.0)")
  parser.add_argument("--noise-scale", type=option_type("noise_scale"), default=0.667,
                      help="prior sampling noise in [0, 10], 0 = deterministic (default: 0.667)")
  parser.add_argument("--noise-scale-w", type=option_type("noise_scale_w"), default=0.6,
                      help="duration sampling noise in [0, 10], 0 = deterministic "
                           "(default: 0.6)")
  parser.add_argument("--sdp-ratio", type=option_type("sdp_ratio"), default=0.2,
                      help="weight of the stochastic duration predictor, in [0, 1] "
                           "(default: 0.2)")
  parser.add_argument("--seed", type=seed_type, default=0,
                      help=f"seed of the sampling noise, in [0, {batching.SEED_LIMIT - 1}] "
                           "(default: 0)")


def tts_options(args) -> dict:
  """The `BaseSpeakerTTS.synthesize` keyword options given on the command line."""
  return dict(noise_scale=args.noise_scale, noise_scale_w=args.noise_scale_w,
              sdp_ratio=args.sdp_ratio, seed=args.seed)


def read_text(args) -> str:
  """--text, or the contents of --text-file; refuses empty text before any model loads."""
  if args.text is not None:
    text, where = args.text, "--text"
  else:
    path = Path(args.text_file)
    where = f"--text-file {path}"
    if not path.exists():
      raise OvjaxError(f"{where}: no such file")
    require_regular_file(path, where)  # Before reading: a FIFO or a device would block or stream.
    if path.stat().st_size > 4 * batching.MAX_TEXT_CHARS + 3:  # UTF-8: <= 4 bytes a character.
      raise TextError(f"{where}: more than the {batching.MAX_TEXT_CHARS} characters allowed per "
                      "text (split it)")
    try:
      text = path.read_bytes().decode("utf-8-sig")  # -sig: drop a BOM Windows editors add.
    except UnicodeDecodeError as e:
      raise TextError(f"{where}: not UTF-8 text (invalid byte at offset {e.start})")
    except OSError as e:
      raise OvjaxError(f"{where}: cannot read ({e.strerror or type(e).__name__})")
  if not text.strip():
    raise TextError(f"{where}: empty text, nothing to speak")
  batching.check_text(text, where)
  return text


def load_base_tts(path, progress: Progress, flag: str, dtype: str = "float32"):
  """A base speaker TTS folder (official or imported) as a `BaseSpeakerTTS`.

  A converter folder in its place is refused by name, before its weights load.
  dtype: the synthesis stage's compute dtype (durations stay float32).
  """
  progress(f"loading base speaker {path}")
  from ovjax.api import BaseSpeakerTTS  # Deferred: imports JAX (seconds).
  from ovjax.checkpoint.store import checkpoint_kind
  with _naming(path, flag):
    if checkpoint_kind(path) != "base_tts":
      raise CheckpointError(f"{path}: a tone-colour converter folder, not a base speaker TTS "
                            "(use it as `clone --converter`)")
    return BaseSpeakerTTS.from_pretrained(path, dtype=dtype)


def load_converter_folder(path, progress: Progress, flag: str, dtype: str = "float32"):
  """Like `load_converter`, for a flag other than --checkpoint; refuses base TTS folders by name.
  dtype: the conversion network's compute dtype."""
  progress(f"loading converter {path}")
  from ovjax.api import ToneColorConverter  # Deferred: imports JAX (seconds).
  from ovjax.checkpoint.store import checkpoint_kind
  with _naming(path, flag):
    if checkpoint_kind(path) != "converter":
      raise CheckpointError(f"{path}: a base speaker TTS folder, not a tone-colour converter "
                            "(use it as `clone --base`)")
    return ToneColorConverter.from_pretrained(path, dtype=dtype)


@contextlib.contextmanager
def _naming(path, flag: str):
  """Prefix checkpoint errors with the flag, and name the folder in config errors.

  `clone` loads two folders, and the library's config errors ("config: ...") do not say which.
  """
  try:
    yield
  except CheckpointError as e:
    message = str(e)
    if message.startswith("config:"):
      message = f"{Path(path) / 'config.json'}:{message[len('config:'):]}"
    raise CheckpointError(f"{flag} {message}") from None
