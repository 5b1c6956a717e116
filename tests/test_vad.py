"""Tests for ovjax.audio.vad on the real reference recordings."""

from pathlib import Path

import numpy as np
import pytest

from ovjax.audio.io import load_audio
from ovjax.audio.vad import embedding_segments, speech_regions
from ovjax.errors import AudioError

AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "audio"
SR = 22050
NAMES = ["demo_speaker0", "demo_speaker1", "demo_speaker2", "example_reference"]

_cache: dict[str, np.ndarray] = {}


def _load(name: str) -> np.ndarray:
  if name not in _cache:
    _cache[name] = load_audio(AUDIO / f"{name}.mp3", SR)
  return _cache[name]


def _check_well_formed(regions, n):
  assert all(0 <= s < e <= n for s, e in regions)
  assert all(a[1] < b[0] for a, b in zip(regions, regions[1:]))  # sorted, disjoint


@pytest.mark.parametrize("name", NAMES)
def test_real_speech_is_mostly_detected(name):
  audio = _load(name)
  regions = speech_regions(audio, SR)
  _check_well_formed(regions, len(audio))
  covered = sum(e - s for s, e in regions) / len(audio)
  assert 0.5 <= covered <= 1.0, covered


def test_inserted_silence_becomes_a_gap():
  speech = _load("demo_speaker0")
  a, b = speech[5 * SR:10 * SR], speech[10 * SR:15 * SR]
  audio = np.concatenate([a, np.zeros(3 * SR, np.float32), b])
  regions = speech_regions(audio, SR)
  _check_well_formed(regions, len(audio))
  sil_start, sil_end = len(a), len(a) + 3 * SR
  speech_in_silence = sum(max(0, min(e, sil_end) - max(s, sil_start)) for s, e in regions)
  assert speech_in_silence < 0.2 * 3 * SR
  # Both sides are still found.
  assert any(s < sil_start - SR for s, _ in regions)
  assert any(e > sil_end + SR for _, e in regions)


@pytest.mark.parametrize("kind", ["silence", "white_noise"])
def test_no_speech_raises(kind):
  rng = np.random.default_rng(0)
  if kind == "silence":
    audio = np.zeros(5 * SR, np.float32)
  else:
    audio = rng.uniform(-1e-3, 1e-3, 5 * SR).astype(np.float32)
  assert speech_regions(audio, SR) == []
  with pytest.raises(AudioError) as e:
    embedding_segments(audio, SR, name="ref.wav")
  assert str(e.value) == "no speech found in ref.wav"


def test_one_second_of_speech_gives_one_segment():
  audio = _load("demo_speaker0")[5 * SR:6 * SR]
  segments = embedding_segments(audio, SR)
  assert len(segments) == 1
  assert 0.5 * SR <= len(segments[0]) <= SR


def test_long_file_is_split_into_ten_second_segments():
  audio = _load("demo_speaker1")  # 91 s
  regions = speech_regions(audio, SR)
  joined = sum(e - s for s, e in regions)
  segments = embedding_segments(audio, SR)
  assert len(segments) == round(joined / SR / 10.0)
  assert len(segments) >= 5
  assert sum(len(s) for s in segments) == joined
  lengths = [len(s) for s in segments]
  assert max(lengths) - min(lengths) <= 1
  # Consecutive chunks of the joined speech, in order.
  np.testing.assert_array_equal(np.concatenate(segments),
                                np.concatenate([audio[s:e] for s, e in regions]))


def test_without_vad_the_whole_audio_is_one_segment():
  audio = _load("demo_speaker2")
  segments = embedding_segments(audio, SR, use_vad=False)
  assert len(segments) == 1
  np.testing.assert_array_equal(segments[0], audio)
