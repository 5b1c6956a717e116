"""Tests for ovjax.audio.io on real recordings and on deliberately broken files."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ovjax.audio import io as audio_io
from ovjax.audio.io import check_not_silent, load_audio, write_wav
from ovjax.errors import AudioError, OvjaxError

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
SPEAKER0 = REF / "audio" / "demo_speaker0.mp3"
GOLDEN = REF / "openvoice" / "converter_v2_small" / "golden.npz"


def _assert_one_line_error(excinfo, path):
  msg = str(excinfo.value)
  assert msg and "\n" not in msg
  assert Path(path).name in msg


def test_mp3_loads_mono_at_22050_with_right_duration():
  audio = load_audio(SPEAKER0, 22050)
  assert audio.dtype == np.float32 and audio.ndim == 1
  native, native_sr = sf.read(str(SPEAKER0))
  assert native_sr == 44100 and native.ndim == 2  # a stereo mp3: exercises the mono mix too
  assert abs(len(audio) / 22050 - len(native) / native_sr) < 1 / 22050 + 1e-9
  assert abs(len(audio) / 22050 - 19.28) < 0.05
  assert 0.1 < np.max(np.abs(audio)) <= 1.0


def test_mp3_matches_reference_librosa_load():
  # golden src_audio = librosa.load(demo_speaker0.mp3, sr=22050)[:44100] (librosa 0.11 + soxr).
  golden = np.load(GOLDEN)["src_audio"]
  audio = load_audio(SPEAKER0, 22050)[:44100]
  assert audio.shape == golden.shape
  # Observed max abs error: 0.0 (bit-identical). The slack covers other libsndfile/soxr builds.
  np.testing.assert_allclose(audio, golden, rtol=0, atol=1e-5)


def test_stereo_is_averaged(tmp_path):
  sr = 22050
  t = np.arange(sr) / sr
  left = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
  right = (0.3 * np.sin(2 * np.pi * 330 * t + 1.0)).astype(np.float32)
  path = tmp_path / "stereo.wav"
  sf.write(str(path), np.stack([left, right], axis=1), sr, subtype="FLOAT")
  audio = load_audio(path, sr)
  assert audio.shape == (sr,)
  np.testing.assert_allclose(audio, (left + right) / 2, rtol=0, atol=1e-7)


def test_wav_at_16k_is_resampled_to_22050(tmp_path):
  t16 = np.arange(16000) / 16000
  path = tmp_path / "tone16k.wav"
  sf.write(str(path), (0.5 * np.sin(2 * np.pi * 440 * t16)).astype(np.float32), 16000,
           subtype="FLOAT")
  audio = load_audio(path, 22050)
  assert audio.shape == (22050,)
  # The resampled tone is the same 440 Hz sine on the 22.05 kHz grid (away from the edges).
  expect = 0.5 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)
  inner = slice(500, -500)
  assert np.max(np.abs(audio[inner] - expect[inner])) < 1e-3


def test_missing_file(tmp_path):
  path = tmp_path / "nope.wav"
  with pytest.raises(AudioError) as e:
    load_audio(path, 22050)
  _assert_one_line_error(e, path)


def test_directory(tmp_path):
  path = tmp_path / "adir.wav"
  path.mkdir()
  with pytest.raises(AudioError) as e:
    load_audio(path, 22050)
  _assert_one_line_error(e, path)


def test_text_file_renamed_wav(tmp_path):
  path = tmp_path / "notes.wav"
  path.write_text("this is not audio\nsecond line\n")
  with pytest.raises(AudioError) as e:
    load_audio(path, 22050)
  _assert_one_line_error(e, path)


def test_empty_wav(tmp_path):
  path = tmp_path / "empty.wav"
  sf.write(str(path), np.zeros(0, np.float32), 22050, subtype="FLOAT")
  with pytest.raises(AudioError) as e:
    load_audio(path, 22050)
  _assert_one_line_error(e, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_wav(tmp_path, bad):
  path = tmp_path / "bad.wav"
  audio = np.full(1000, 0.1, np.float32)
  audio[500] = bad
  sf.write(str(path), audio, 22050, subtype="FLOAT")
  with pytest.raises(AudioError) as e:
    load_audio(path, 22050)
  _assert_one_line_error(e, path)


def test_all_zero_wav_is_silent_unless_allowed(tmp_path):
  path = tmp_path / "zeros.wav"
  sf.write(str(path), np.zeros(22050, np.float32), 22050, subtype="FLOAT")
  with pytest.raises(AudioError) as e:
    load_audio(path, 22050)
  _assert_one_line_error(e, path)
  assert "silent" in str(e.value)
  audio = load_audio(path, 22050, allow_silent=True)
  assert audio.shape == (22050,) and not audio.any()
  with pytest.raises(AudioError):
    check_not_silent(audio, path)
  check_not_silent(np.full(10, 0.01, np.float32), path)  # quiet but audible: fine


def test_write_wav_round_trip_is_exact_and_leaves_no_temp(tmp_path):
  rng = np.random.default_rng(0)
  audio = rng.uniform(-1, 1, 12345).astype(np.float32)
  out = tmp_path / "sub" / "dir" / "out.wav"  # parent is created
  write_wav(out, audio, 22050)
  back, sr = sf.read(str(out), dtype="float32")
  assert sr == 22050
  assert sf.info(str(out)).subtype == "FLOAT"
  np.testing.assert_array_equal(back, audio)
  assert sorted(os.listdir(out.parent)) == ["out.wav"]
  # Overwriting an existing file works the same way.
  write_wav(out, audio[:100] * 0.5, 22050)
  np.testing.assert_array_equal(sf.read(str(out), dtype="float32")[0], audio[:100] * 0.5)
  assert sorted(os.listdir(out.parent)) == ["out.wav"]


def test_write_wav_rejects_nan(tmp_path):
  out = tmp_path / "nan.wav"
  with pytest.raises(OvjaxError):
    write_wav(out, np.array([0.0, np.nan], np.float32), 22050)
  assert os.listdir(tmp_path) == []


def test_write_wav_failing_midway_leaves_nothing(tmp_path, monkeypatch):
  def boom(file, data, *args, **kwargs):
    with open(file, "wb") as f:  # a partial write, then a crash
      f.write(b"RIFF\x00\x00")
    raise OSError("disk full")

  monkeypatch.setattr(audio_io.sf, "write", boom)
  out = tmp_path / "out.wav"
  with pytest.raises(OSError):
    write_wav(out, np.zeros(100, np.float32), 22050)
  assert os.listdir(tmp_path) == []

  # A previous good output survives a failed overwrite untouched.
  monkeypatch.undo()
  write_wav(out, np.full(10, 0.25, np.float32), 22050)
  monkeypatch.setattr(audio_io.sf, "write", boom)
  with pytest.raises(OSError):
    write_wav(out, np.zeros(100, np.float32), 22050)
  assert os.listdir(tmp_path) == ["out.wav"]
  np.testing.assert_array_equal(sf.read(str(out), dtype="float32")[0], np.full(10, 0.25))


def test_write_wav_permissions_follow_umask(tmp_path):
  old = os.umask(0o022)
  try:
    out = tmp_path / "perm.wav"
    write_wav(out, np.zeros(10, np.float32), 22050)
  finally:
    os.umask(old)
  assert (out.stat().st_mode & 0o777) == 0o644
