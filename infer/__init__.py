"""The `ovjax` subcommands, one small module each (`register(subparsers)` + `run(args) -> int`).

Nothing here imports JAX at module level: `ovjax --help` must stay instant, so the heavy
imports (`ovjax.api`, `ovjax.checkpoint.store`) happen inside each `run`. The helpers below do
the cheap up-front checks that let a bad invocation fail before seconds of model loading.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ovjax.errors import AudioError, CheckpointError, OvjaxError


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
  """
  path = Path(path)
  if path.suffix.lower() != suffix:
    raise OvjaxError(f"{flag} {path}: the output must be a {suffix} file")
  if path.is_dir():
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
  """Existence only (decoding needs the model's rate); same messages as `load_audio`."""
  for path in paths:
    path = Path(path)
    if not path.exists():
      raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
      raise AudioError(f"audio path is a directory, not a file: {path}")


def check_tone_color_inputs(paths) -> None:
  for path in paths:
    if path is not None and not Path(path).is_file():
      raise CheckpointError(f"{path}: no such tone-colour embedding file")


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
