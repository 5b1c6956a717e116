"""Speech corpora on disk read into `Item`s: (key, audio file, transcript, speaker, language).

Readers only look at file names and transcripts; audio is decoded later (`preprocess.py`), so a
bad audio file becomes a drop there. What a reader itself cannot use (a malformed manifest or
metadata line, a transcript without audio, audio without a transcript, a repeated key) is
appended to `drops` as a `Drop(key, reason, detail)` (the key names the line for a bad line) and
logged; only a missing corpus root is an error.

Layouts:
* LJSpeech: `root/metadata.csv` (`id|text|normalized text`) and `root/wavs/<id>.wav`.
* VCTK 0.92: `root/wav48_silence_trimmed/<spk>/<spk>_<n>_mic1.flac` + `root/txt/<spk>/<spk>_<n>.txt`;
  the older VCTK-Corpus 0.80: `root/wav48/<spk>/<spk>_<n>.wav` + the same `txt/`.
* Manifest: JSON lines `{"audio": path, "text": ..., "speaker": ..., "language": ..., "key": ...}`;
  `audio` relative to the manifest's folder or absolute, the last three optional.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from ovjax.errors import OvjaxError

_LOG = logging.getLogger(__name__)
# Per-line warnings stop after this many per reason (the build log counts all of them).
_WARN_LIMIT = 5


@dataclasses.dataclass(frozen=True)
class Item:
  """One utterance to preprocess: audio from `audio_path`, or in memory (`audio`, `sample_rate`)."""
  key: str
  audio_path: str | None
  text: str
  speaker: str
  language: str
  # Catalog datasets carry their samples (float32, [N] or [N, channels]) instead of a file.
  audio: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
  sample_rate: int = 0


@dataclasses.dataclass(frozen=True)
class Drop:
  """An item (or corpus line) left out of a dataset, and why."""
  key: str
  reason: str
  detail: str = ""


def _drop(drops: list[Drop] | None, counts: dict[str, int], drop: Drop) -> None:
  counts[drop.reason] = counts.get(drop.reason, 0) + 1
  if counts[drop.reason] <= _WARN_LIMIT:
    _LOG.warning("dropped %s (%s): %s", drop.key, drop.reason, drop.detail)
  if drops is not None:
    drops.append(drop)


def _check_dir(root: str | os.PathLike, what: str) -> Path:
  root = Path(root)
  if not root.is_dir():
    raise OvjaxError(f"{what} corpus folder not found: {root}")
  return root


def _read_text(path: Path) -> str:
  raw = path.read_bytes()
  try:
    return raw.decode("utf-8").strip()
  except UnicodeDecodeError:
    # A few old corpora ship Latin-1 transcripts.
    return raw.decode("latin-1").strip()


def _unique(items: list[Item], drops: list[Drop] | None, counts: dict[str, int]) -> list[Item]:
  seen = set()
  out = []
  for item in items:
    if item.key in seen:
      _drop(drops, counts, Drop(item.key, "duplicate key", f"{item.audio_path} repeats the key"))
      continue
    seen.add(item.key)
    out.append(item)
  return out


def ljspeech_items(root: str | os.PathLike, language: str = "en-us",
                   drops: list[Drop] | None = None) -> list[Item]:
  """Items of an LJSpeech-layout corpus (one speaker, named after the folder).

  The normalised transcript (third column) is used when present, else the raw one. A line with
  fewer than two columns is a "bad metadata line" drop keyed `metadata.csv:<line number>`.
  """
  root = _check_dir(root, "LJSpeech")
  metadata = root / "metadata.csv"
  if not metadata.is_file():
    raise OvjaxError(f"LJSpeech corpus {root} has no metadata.csv")
  counts: dict[str, int] = {}
  items = []
  speaker = root.resolve().name
  for number, line in enumerate(_read_text(metadata).splitlines(), start=1):
    if not line.strip():
      continue
    fields = line.split("|")
    if len(fields) < 2 or not fields[0].strip():
      _drop(drops, counts, Drop(f"metadata.csv:{number}", "bad metadata line",
                                f"expected 'id|text|normalized text', got {line[:60]!r}"))
      continue
    key = fields[0].strip()
    normalized = fields[2].strip() if len(fields) >= 3 else ""
    text = normalized or fields[1].strip()
    items.append(Item(key, str(root / "wavs" / f"{key}.wav"), text, speaker, language))
  return _unique(items, drops, counts)


def _vctk_audio(audio_dir: Path, trimmed: bool, mic: str) -> dict[str, Path]:
  """{utterance key: audio file} of every speaker folder."""
  found = {}
  pattern = f"*_{mic}.flac" if trimmed else "*.wav"
  for path in sorted(audio_dir.glob(f"*/{pattern}")):
    key = path.stem[:-len(mic) - 1] if trimmed else path.stem
    found[key] = path
  return found


def vctk_items(root: str | os.PathLike, language: str = "en-us", mic: str = "mic1",
               drops: list[Drop] | None = None) -> list[Item]:
  """Items of a VCTK corpus, 0.92 (`wav48_silence_trimmed/`, FLAC per mic) or 0.80 (`wav48/`).

  Speakers are the folder names (p225, ...). A transcript without audio is a "missing audio"
  drop, audio without a transcript (all of p315 in 0.92) a "missing transcript" drop.
  """
  if mic not in ("mic1", "mic2"):
    raise OvjaxError(f"VCTK microphone must be 'mic1' or 'mic2', not {mic!r}")
  root = _check_dir(root, "VCTK")
  txt_dir = root / "txt"
  trimmed_dir, old_dir = root / "wav48_silence_trimmed", root / "wav48"
  if trimmed_dir.is_dir():
    audio = _vctk_audio(trimmed_dir, trimmed=True, mic=mic)
  elif old_dir.is_dir():
    audio = _vctk_audio(old_dir, trimmed=False, mic=mic)
  else:
    raise OvjaxError(f"VCTK corpus {root} has neither wav48_silence_trimmed/ (0.92) nor wav48/")
  if not txt_dir.is_dir():
    raise OvjaxError(f"VCTK corpus {root} has no txt/ folder of transcripts")

  counts: dict[str, int] = {}
  transcripts = {p.stem: p for p in sorted(txt_dir.glob("*/*.txt"))}
  items = []
  for key in sorted(set(transcripts) | set(audio)):
    if key not in audio:
      _drop(drops, counts, Drop(key, "missing audio", f"no audio file for {transcripts[key]}"))
      continue
    if key not in transcripts:
      _drop(drops, counts, Drop(key, "missing transcript", f"no transcript for {audio[key]}"))
      continue
    speaker = audio[key].parent.name
    items.append(Item(key, str(audio[key]), _read_text(transcripts[key]), speaker, language))
  return items


def manifest_items(path: str | os.PathLike, language: str = "en-us", speaker: str = "default",
                   drops: list[Drop] | None = None) -> list[Item]:
  """Items of a JSON-lines manifest; `language`/`speaker` fill in lines that do not give them.

  A line that is not a JSON object with string "audio" and "text" is a "bad manifest line" drop
  keyed `<manifest name>:<line number>`. The key defaults to the audio path as written.
  """
  path = Path(path)
  if not path.is_file():
    raise OvjaxError(f"manifest not found: {path}")
  folder = path.resolve().parent
  counts: dict[str, int] = {}
  items = []
  for number, line in enumerate(_read_text(path).splitlines(), start=1):
    if not line.strip():
      continue
    where = f"{path.name}:{number}"
    try:
      entry = json.loads(line)
    except json.JSONDecodeError as e:
      _drop(drops, counts, Drop(where, "bad manifest line", f"not JSON ({e.msg})"))
      continue
    missing = [k for k in ("audio", "text") if not isinstance(entry, dict)
               or not isinstance(entry.get(k), str)]
    if missing:
      _drop(drops, counts, Drop(where, "bad manifest line",
                                f"needs string {' and '.join(repr(k) for k in missing)}"))
      continue
    audio = Path(entry["audio"])
    audio = audio if audio.is_absolute() else folder / audio
    key = str(entry.get("key") or entry.get("id") or entry["audio"])
    items.append(Item(key, str(audio), entry["text"], str(entry.get("speaker") or speaker),
                      str(entry.get("language") or language)))
  return _unique(items, drops, counts)
