"""The `ovjax` command line (one module per subcommand in this package): extract-se, convert,
tts, clone, import-checkpoint, batch, eval, bench, corpus, train, export, demo.

Exit codes: 0 success; 1 bad input (an `OvjaxError`, reported as one line); 2 usage error
(argparse); 3 internal error (a bug: one line, or a traceback with OVJAX_DEBUG=1); 130 interrupted.
"""
from __future__ import annotations

import os

# Before anything can import JAX: keep XLA/TSL's C++ logging off the user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Compiled programs persist across runs (a full-size converter bucket takes seconds to compile):
# the second `ovjax convert` of a similar length starts at once. OVJAX_CACHE_DIR="" disables it.
_cache = os.environ.get("OVJAX_CACHE_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "ovjax", "xla"))
if _cache:
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _cache)

import argparse  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import ovjax  # noqa: E402  (just __version__: no JAX)
from ovjax.errors import OvjaxError  # noqa: E402

# Only argument definitions are imported here; each command imports JAX inside its `run`.
from ovjax.cli import (batch, bench, clone, convert, corpus, demo, eval as eval_cmd,  # noqa: E402
                       export, extract_se, import_checkpoint, train, tts)

PROG = "ovjax"
_COMMANDS = (demo, extract_se, convert, tts, clone, import_checkpoint, batch, eval_cmd, bench,
             corpus, train, export)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog=PROG, description="OpenVoice instant voice cloning (base speaker TTS and tone-colour "
                               "conversion) in JAX.",
      epilog="Exit codes: 0 ok, 1 bad input, 2 usage, 3 internal error (set OVJAX_DEBUG=1 for "
             "its traceback), 130 interrupted.")
  parser.add_argument("--version", action="version", version=f"{PROG} {ovjax.__version__}")
  parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
  # -q is also accepted after the command; SUPPRESS keeps the subparser's default from
  # overwriting a `ovjax -q convert ...`.
  shared = argparse.ArgumentParser(add_help=False)
  shared.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                      help="print nothing but errors")
  subparsers = parser.add_subparsers(title="commands", dest="command", required=True,
                                     metavar="COMMAND")
  for command in _COMMANDS:
    command.register(subparsers, parents=[shared])
  return parser


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


def _report(message: str) -> None:
  print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _debugging() -> bool:
  return os.environ.get("OVJAX_DEBUG", "") not in ("", "0")


# Other libraries' notices about their own future: nothing a user of the CLI can act on.
_LIBRARY_NOTICES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
  """Python warnings as `ovjax: warning: ...` lines (no source path, no code excerpt)."""
  if issubclass(category, _LIBRARY_NOTICES) and "ovjax" not in str(filename) and not _debugging():
    return
  _report(f"warning: {_one_line(message)}")


def main(argv=None) -> int:
  """Run the CLI; returns the exit code (never raises, unless OVJAX_DEBUG is set)."""
  with warnings.catch_warnings():  # Restored on return: main() can be called in-process.
    if not _debugging():
      warnings.showwarning = _show_warning
    return _main(argv)


def _main(argv) -> int:
  parser = build_parser()
  try:
    args, extra = parser.parse_known_args(argv)
    # argparse cannot take positionals after options once a command's first positional is
    # read; commands that take trailing positionals (train's overrides) collect them here.
    if extra and hasattr(args, "extra_positionals") and not any(a.startswith("-") for a in extra):
      setattr(args, args.extra_positionals, list(getattr(args, args.extra_positionals)) + extra)
    elif extra:
      parser.error(f"unrecognized arguments: {' '.join(extra)}")
  except SystemExit as e:  # --help, --version (0) and usage errors (2); argparse has printed.
    return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
  try:
    return int(args.run(args) or 0)
  except OvjaxError as e:  # Bad input: the message is the whole story, even when debugging.
    _report(f"error: {_one_line(e) or type(e).__name__}")
    return 1
  except KeyboardInterrupt:
    _report("interrupted")
    return 130
  except Exception as e:  # noqa: BLE001 - anything else is a bug; say so in one line.
    if _debugging():
      raise
    _report(f"internal error: {type(e).__name__}: {_one_line(e)} "
            "(set OVJAX_DEBUG=1 for a traceback)")
    return 3


if __name__ == "__main__":
  sys.exit(main())
