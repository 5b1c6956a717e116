"""One corpus item -> one training record, or the reason it cannot be one.

A record holds what training reads: `audio` int16 PCM [N] at the spec's rate (mono, resampled
as `ovjax.audio.io.load_audio` does, scaled by 32767 and clipped), `ids` int32 [T] (exactly
`text_to_sequence` with the spec), `frames` = N // hop, and for people: `text`, `phonemes` (the
front end's cleaned string), `speaker`, `speaker_id`, `language`, `key`.

Characters of the cleaned string missing from the symbol table are left out of `ids`, as
`text_to_sequence` does, but silently: a build counts them (`dropped_characters`) instead of
warning once per utterance.
"""
from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
import dataclasses

import librosa
import numpy as np

from ovjax import text as text_lib
from ovjax.audio.io import check_not_silent, load_audio
from ovjax.data.corpus import Drop, Item
from ovjax.errors import AudioError, OvjaxError, TextError
from ovjax.text.symbols import ids_are_speakable, intersperse, text_to_ids

DROP_REASONS = (
    # preprocess
    "unreadable audio", "silent audio", "empty text", "unsupported language", "unspeakable text",
    "too short", "too long", "more tokens than frames", "processing error",
    # corpus readers (corpus.py)
    "bad manifest line", "bad metadata line", "missing audio", "missing transcript",
    "duplicate key",
)


@dataclasses.dataclass(frozen=True)
class TextSpec:
  """How transcripts become symbol ids.

  Attributes:
    frontend: "espeak" (IPA from espeak-ng) or "cjke" (the official v1 cleaners).
    symbols: the model's symbol table (id = position; id 0 is the blank).
    add_blank: intersperse blank id 0 between symbols.
  """
  frontend: str
  symbols: tuple[str, ...]
  add_blank: bool = True

  def __post_init__(self):
    if self.frontend not in text_lib.FRONTENDS:
      raise OvjaxError(f"unknown text front end {self.frontend!r}; choose one of "
                       f"{', '.join(text_lib.FRONTENDS)}")
    symbols = tuple(self.symbols)
    if not symbols or not all(isinstance(s, str) and len(s) == 1 for s in symbols):
      raise OvjaxError("the symbol table must be a non-empty sequence of single characters")
    object.__setattr__(self, "symbols", symbols)
    object.__setattr__(self, "add_blank", bool(self.add_blank))


@dataclasses.dataclass(frozen=True)
class AudioSpec:
  """Sample rate, hop and the lengths a record may have.

  Attributes:
    sampling_rate: rate of the stored audio (Hz).
    hop_length: spectrogram hop; a record has `samples // hop_length` frames.
    min_seconds, max_seconds: shorter / longer items are dropped ("too short" / "too long").
    min_frames: items with fewer frames are dropped too ("too short"), e.g. the training segment.
  """
  sampling_rate: int = 22050
  hop_length: int = 256
  min_seconds: float = 0.5
  max_seconds: float = 20.0
  min_frames: int = 0

  def __post_init__(self):
    if int(self.sampling_rate) <= 0 or int(self.hop_length) <= 0:
      raise OvjaxError("sampling_rate and hop_length must be positive")
    if not 0 <= float(self.min_seconds) < float(self.max_seconds):
      raise OvjaxError(f"need 0 <= min_seconds < max_seconds, got {self.min_seconds} and "
                       f"{self.max_seconds}")
    if int(self.min_frames) < 0:
      raise OvjaxError(f"min_frames must be >= 0, got {self.min_frames}")
    for name, kind in (("sampling_rate", int), ("hop_length", int), ("min_seconds", float),
                       ("max_seconds", float), ("min_frames", int)):
      object.__setattr__(self, name, kind(getattr(self, name)))


def frontend_language(language: str, frontend: str) -> str:
  """The language as the front end names it: "en-us" -> "en" for cjke (it knows EN and ZH)."""
  if frontend == "cjke" and "-" in language:
    return language.split("-")[0]
  return language


def dropped_characters(phonemes: str, symbols: Sequence[str]) -> collections.Counter:
  """Counts of the characters of `phonemes` that `symbols` lacks (left out of the ids)."""
  table = set(symbols)
  return collections.Counter(ch for ch in phonemes if ch not in table)


def _to_int16(audio: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)


def _samples(item: Item, rate: int) -> np.ndarray:
  """Mono float32 samples at `rate` (AudioError when unusable)."""
  if item.audio is None:
    if not item.audio_path:
      raise AudioError(f"item {item.key} has neither an audio file nor samples")
    return load_audio(item.audio_path, rate, allow_silent=True)
  audio = np.asarray(item.audio, dtype=np.float32)
  if audio.ndim == 2:
    audio = audio.mean(axis=1)
  if audio.ndim != 1 or audio.size == 0 or item.sample_rate <= 0:
    raise AudioError(f"item {item.key} has no usable samples")
  if not np.all(np.isfinite(audio)):
    raise AudioError(f"item {item.key} contains NaN or infinite samples")
  if item.sample_rate != rate:
    # The resampler load_audio uses, so catalog and file items get the same samples.
    audio = librosa.resample(audio, orig_sr=item.sample_rate, target_sr=rate, res_type="soxr_hq")
  return np.ascontiguousarray(audio, dtype=np.float32)


class _Unspeakable(Exception):
  """The cleaned transcript has no sound the symbol table knows."""


def _ids(text: str, language: str, spec: TextSpec) -> tuple[list[int], str]:
  """(ids, cleaned string) exactly as text_to_sequence computes them, without its warning."""
  cleaned = text_lib.clean_text(text, frontend_language(language, spec.frontend), spec.frontend)
  table = set(spec.symbols)
  ids = text_to_ids("".join(ch for ch in cleaned if ch in table), spec.symbols)
  if not ids_are_speakable(ids, spec.symbols):
    raise _Unspeakable(f"nothing speakable (cleaned to {cleaned[:40]!r})")
  return (intersperse(ids, 0) if spec.add_blank else ids), cleaned


def preprocess_item(item: Item, text: TextSpec, audio: AudioSpec,
                    speakers: Mapping[str, int] | None = None) -> dict | Drop:
  """`preprocess`, with the reason's detail: a record, or a `Drop(key, reason, detail)`."""
  try:
    return _preprocess(item, text, audio, speakers)
  except Exception as e:  # pylint: disable=broad-except
    # A build must survive any one bad item; the log says what went wrong.
    return Drop(item.key, "processing error", f"{type(e).__name__}: {e}"[:200])


def _preprocess(item, text, audio, speakers):
  def drop(reason, detail):
    return Drop(item.key, reason, detail)

  if not isinstance(item.text, str) or not item.text.strip():
    return drop("empty text", "the transcript is empty")
  try:
    samples = _samples(item, audio.sampling_rate)
  except AudioError as e:
    return drop("unreadable audio", str(e))
  try:
    check_not_silent(samples, item.audio_path or item.key)
  except AudioError as e:
    return drop("silent audio", str(e))
  seconds = samples.size / audio.sampling_rate
  frames = samples.size // audio.hop_length
  if seconds < audio.min_seconds:
    return drop("too short", f"{seconds:.2f} s < min_seconds {audio.min_seconds}")
  if frames < audio.min_frames:
    return drop("too short", f"{frames} frames < min_frames {audio.min_frames}")
  if seconds > audio.max_seconds:
    return drop("too long", f"{seconds:.2f} s > max_seconds {audio.max_seconds}")
  try:
    ids, cleaned = _ids(item.text, item.language, text)
  except TextError as e:
    return drop("unsupported language", str(e))
  except _Unspeakable as e:
    return drop("unspeakable text", str(e))
  if len(ids) > frames:
    # Monotonic alignment needs at least one frame per token.
    return drop("more tokens than frames", f"{len(ids)} tokens > {frames} frames")
  return {
      "audio": _to_int16(samples),
      "ids": np.asarray(ids, dtype=np.int32),
      "frames": np.int32(frames),
      "text": item.text,
      "phonemes": cleaned,
      "speaker": item.speaker,
      "speaker_id": np.int32(speakers[item.speaker] if speakers is not None else -1),
      "language": item.language,
      "key": item.key,
  }


def preprocess(item: Item, text: TextSpec, audio: AudioSpec,
               speakers: Mapping[str, int] | None = None) -> dict | str:
  """An item -> a record dict, or the drop reason (one of `DROP_REASONS`).

  Args:
    item: the utterance.
    text: how its transcript becomes ids.
    audio: rate, hop and length limits.
    speakers: {speaker name: id}, the dataset's sorted speaker list; without it `speaker_id`
      is -1.
  """
  result = preprocess_item(item, text, audio, speakers)
  return result.reason if isinstance(result, Drop) else result
