"""Reading and writing audio files.

`load_audio` matches what the reference gets from `librosa.load(path, sr=...)`: samples decoded by
libsndfile, channels averaged to mono, then resampled with soxr "HQ" (librosa's default). Every
problem with the input is raised as a one-line `AudioError` naming the file.
"""

import contextlib
import os
import re
import sys
import tempfile
import threading
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from ovjax.errors import AudioError, OvjaxError
from ovjax.fileio import atomic_output, describe_content, require_regular_file

# Header sanity bounds, checked before decoding: a rate outside them is a corrupt or hostile
# header (resampling from 1 Hz would blow the file up a million-fold), and a longer recording
# would decode to gigabytes of samples.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
MAX_SECONDS = 4 * 3600

# Peak below this is treated as silence: ~-80 dBFS, below the dither / noise floor of any real
# recording, so only digital silence (or near-zero garbage) trips it.
SILENCE_PEAK = 1e-4


def _one_line(err: BaseException) -> str:
  """First line of an exception's text (library errors are sometimes multi-line)."""
  text = str(err).strip().splitlines()
  return text[0] if text else type(err).__name__


def _check_rate(path: Path, sr: int) -> None:
  if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
    raise AudioError(f"audio file {path}: sample rate {sr} Hz is outside "
                     f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz (corrupt header?)")


# What libmpg123 (inside libsndfile) prints straight to file descriptor 2 on damaged MP3 data:
# "Note: Trying to resync...", "[src/libmpg123/parse.c:...] error: ...". Not ours to show.
_DECODER_CHATTER = re.compile(rb"^(Note: |Warning: |\[src/libmpg123/|\[.*mpg123.*\] )")
_FD2_LOCK = threading.Lock()  # fd 2 is process-wide: one decoder at a time borrows it.


@contextlib.contextmanager
def _decoder_chatter_silenced():
  """Point fd 2 at a temporary file while a C decoder runs; afterwards, pass on every captured
  line that is not decoder chatter (another thread's progress bar, say)."""
  with _FD2_LOCK, tempfile.TemporaryFile() as captured:
    try:
      sys.stderr.flush()
      saved = os.dup(2)
    except (OSError, ValueError):  # No fd 2 (embedded interpreters): nothing to silence.
      yield
      return
    try:
      os.dup2(captured.fileno(), 2)
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = [line for line in captured.read(1 << 20).splitlines(keepends=True)
              if not _DECODER_CHATTER.match(line)]
      if kept:
        os.write(2, b"".join(kept))


def _not_audio(path: Path, sf_err: BaseException) -> AudioError:
  """The one-line error for a file no decoder could read: what the file is, then why."""
  kind = describe_content(path)
  if kind in ("a RIFF/WAV file", "a FLAC file", "an Ogg file", "an MP3 file"):
    return AudioError(f"cannot read audio file {path}: {kind}, but its data is damaged or "
                      f"truncated ({_one_line(sf_err)})")
  if kind in ("an MP4/M4A file", "a Matroska/WebM file"):
    return AudioError(f"cannot read audio file {path}: {kind}, a format this build cannot "
                      "decode (convert it to WAV, FLAC, Ogg or MP3)")
  return AudioError(f"cannot read audio file {path}: it is {kind}, not audio")


def _read(path: Path) -> tuple[np.ndarray, int]:
  """Decode `path` to float32 `[frames, channels]` (or `[frames]`) at its native rate."""
  with _decoder_chatter_silenced():
    return _decode(path)


def _decode(path: Path) -> tuple[np.ndarray, int]:
  try:
    # As sf.read, but the header is checked before any sample is decoded.
    with sf.SoundFile(str(path)) as f:
      sr = int(f.samplerate)
      _check_rate(path, sr)
      if f.frames > MAX_SECONDS * sr:
        raise AudioError(f"audio file {path}: {f.frames / sr / 3600:.1f} hours long, over the "
                         f"{MAX_SECONDS // 3600} hour limit")
      data = f.read(dtype="float32", always_2d=True)
    return data, sr
  except (sf.LibsndfileError, RuntimeError) as sf_err:
    # libsndfile covers wav/flac/ogg/mp3; librosa is only a last resort for anything it might
    # read through another backend. Report soundfile's reason if both fail.
    try:
      data, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception:  # noqa: BLE001 - any failure here means "not audio".
      raise _not_audio(path, sf_err) from None
    _check_rate(path, int(sr))
    data = np.asarray(data, dtype=np.float32)
    # librosa returns [channels, frames] for multi-channel input.
    data = data[:, None] if data.ndim == 1 else data.T
    return data, int(sr)


def check_not_silent(audio: np.ndarray, path: str | os.PathLike) -> None:
  """Raise `AudioError` when `audio` is digitally silent (nothing to convert or clone)."""
  if audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK:
    raise AudioError(f"audio file {path} is silent (peak amplitude below {SILENCE_PEAK:g})")


def load_audio(path: str | os.PathLike, sample_rate: int, allow_silent: bool = False) -> np.ndarray:
  """Load `path` as mono float32 at `sample_rate`.

  Raises `AudioError` (one line, naming the file) when the file is missing, a directory, not a
  regular file (a FIFO, socket or device: refused before opening, which could block forever), not
  decodable audio, has a header rate outside 1000..384000 Hz or a duration over 4 hours, is
  empty, contains NaN/inf, or (unless `allow_silent`) is silent.
  """
  path = Path(path)
  if not path.exists():
    raise AudioError(f"audio file not found: {path}")
  if path.is_dir():
    raise AudioError(f"audio path is a directory, not a file: {path}")
  require_regular_file(path, f"audio file {path}", AudioError)

  data, sr = _read(path)
  if data.shape[0] == 0:
    raise AudioError(f"audio file {path} contains no samples")
  # Check before mixing/resampling, which would smear a single bad sample everywhere.
  if not np.all(np.isfinite(data)):
    raise AudioError(f"audio file {path} contains NaN or infinite samples")

  # Plain channel average, exactly like librosa.to_mono.
  audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
  audio = np.ascontiguousarray(audio, dtype=np.float32)
  if sr != sample_rate:
    audio = librosa.resample(audio, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
  if audio.size == 0:  # a handful of samples can resample to nothing.
    raise AudioError(f"audio file {path} is too short to resample to {sample_rate} Hz")

  if not allow_silent:
    check_not_silent(audio, path)
  return audio


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
  """Write mono or `[frames, channels]` float32 WAV atomically.

  The data goes to a hidden temporary file in the target directory and is then renamed over
  `path`, so a crash or error never leaves a truncated output (or a stray temp file) behind.
  """
  path = Path(path)
  audio = np.asarray(audio, dtype=np.float32)
  if not np.all(np.isfinite(audio)):
    raise OvjaxError(f"refusing to write {path}: audio contains NaN or infinite samples")
  with atomic_output(path) as tmp:
    # The ".tmp" suffix hides the type from libsndfile, so name the format explicitly.
    sf.write(str(tmp), audio, int(sample_rate), subtype="FLOAT", format="WAV")
