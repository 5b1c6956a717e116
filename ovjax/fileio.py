"""Atomic outputs: work goes to a hidden temporary beside the target and is renamed into place,
so a crash or an error never leaves a half-written file or folder behind."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path, directory: bool = False):
  """Yield a temporary path beside `path` (a file, or a folder if `directory`); on success it
  replaces `path`, on any exception it is removed.

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
    if directory and path.is_dir():
      path.rmdir()  # Only ever an empty folder here; callers refuse non-empty destinations.
    os.replace(tmp, path)
  except BaseException:
    if tmp.is_dir():
      shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists():
      tmp.unlink()
    raise
