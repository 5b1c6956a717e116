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


# Leading bytes of the formats a user might hand ovjax by mistake, for error messages that say
# what a file is ("it is plain text") rather than only what it is not.
_MAGIC = (
    (b"RIFF", "a RIFF/WAV file"), (b"fLaC", "a FLAC file"), (b"OggS", "an Ogg file"),
    (b"ID3", "an MP3 file"), (b"\x93NUMPY", "a NumPy .npy array"), (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "an empty ZIP archive"), (b"\x1f\x8b", "a gzip file"), (b"%PDF", "a PDF"),
    (b"\x7fELF", "an executable (ELF)"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x80\x02", "a Python pickle"), (b"\x80\x04", "a Python pickle"), (b"\x80\x05", "a Python pickle"),
    (b"\x89HDF", "an HDF5 file"), (b"\x1aE\xdf\xa3", "a Matroska/WebM file"))


def describe_content(path) -> str:
  """What a regular file looks like from its first bytes, in words: "an empty file",
  "plain text", "JSON text", "a ZIP archive", "an MP3 file", ... or "binary data"."""
  try:
    with open(path, "rb") as f:
      head = f.read(512)
  except OSError as e:
    return f"unreadable ({e.strerror or type(e).__name__})"
  if not head:
    return "an empty file"
  for magic, name in _MAGIC:
    if head.startswith(magic):
      return name
  if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xe3"):  # MPEG audio frame sync.
    return "an MP3 file"
  if len(head) > 8 and head[4:8] == b"ftyp":
    return "an MP4/M4A file"
  try:
    text = head.decode("utf-8")
  except UnicodeDecodeError as e:
    if e.start < len(head) - 3:  # Not merely a character cut at the 512th byte.
      return "binary data"
    text = head[:e.start].decode("utf-8")
  if "\0" in text:
    return "binary data"
  stripped = text.lstrip("\ufeff \t\r\n")
  if stripped[:1] in ("{", "["):
    return "JSON text"
  if stripped[:1] == "<":
    return "HTML/XML text"
  return "plain text"
