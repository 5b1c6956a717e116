"""Atomic outputs: work goes to a hidden temporary beside the target and is renamed into place,
so a crash or an error never leaves a half-written file or folder behind. Also the checks that
keep hostile paths harmless: inputs must be regular files, outputs stay inside their folder."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from pathlib import Path

from ovjax.errors import OvjaxError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a directory"))


def file_kind(mode: int) -> str:
  """What a non-regular file is, in words ("a FIFO (named pipe)", ...)."""
  for test, name in _KINDS:
    if test(mode):
      return name
  return "not a regular file"


def require_regular_file(path, what: str | None = None, error=OvjaxError) -> os.stat_result:
  """os.stat(path), raising `error` (one line) unless `path` is a regular file (or a symlink to
  one).

  Checked with stat before anything opens it: opening a FIFO for reading blocks until a writer
  comes, and a device can stream forever. `what` names the file in the message (default: path).
  """
  what = str(path) if what is None else what
  try:
    st = os.stat(path)
  except FileNotFoundError:
    raise error(f"{what}: no such file") from None
  except OSError as e:
    raise error(f"{what}: cannot read ({e.strerror or type(e).__name__})") from None
  if not stat.S_ISREG(st.st_mode):
    raise error(f"{what}: is {file_kind(st.st_mode)}, not a regular file")
  return st


def inside(path, root) -> bool:
  """Whether `path` (already resolved) is `root` (resolved) or below it."""
  path, root = Path(path), Path(root)
  return path == root or root in path.parents


@contextlib.contextmanager
def atomic_output(path, directory: bool = False):
  """Yield a temporary path beside `path` (a file, or a folder if `directory`); on success it
  replaces `path`, on any exception it is removed. A symlink at `path` is replaced by the new
  file or folder; its target is never written.

  Created with mode 0666/0777 filtered by the umask, like any new file; tempfile's 0600/0700
  would survive the rename and make shared outputs owner-only.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
  if directory:
    os.mkdir(tmp, 0o777)
  else:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
  try:
    yield tmp
    if path.is_symlink():
      # Replace the link itself, never write its target. A file's rename does that anyway; a
      # folder cannot be renamed over a link, so that one goes first.
      if directory:
        path.unlink()
    elif directory and path.is_dir():
      path.rmdir()  # Only ever an empty folder here; callers refuse non-empty destinations.
    os.replace(tmp, path)
  except BaseException:
    if tmp.is_dir():
      shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists():
      tmp.unlink()
    raise
