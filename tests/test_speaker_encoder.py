"""resemblyzer's speaker encoder in JAX against resemblyzer's own numbers (resemblyzer/golden.npz).

The front end is checked twice, so a failure says which part is off: mel and partials from the
golden preprocessed 16 kHz wav, and resampling + level + silence trimming from the mp3 itself.
The weights come from `pip install --no-deps resemblyzer==0.1.4`; without them these tests fail.
"""
import io
import os
import pickle
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import reference_path
from ovjax.audio.io import load_audio
from ovjax.errors import AudioError, CheckpointError, OvjaxError
from ovjax.eval import speaker_encoder as se
from ovjax.eval import speaker_frontend as fe

NAMES = ("demo_speaker0", "demo_speaker2", "example_reference")
SOURCE_SR = 44100  # the mp3s' own rate; the goldens are their first 8 s, resampled by resemblyzer


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(reference_path("resemblyzer", "golden.npz")))


@pytest.fixture(scope="module")
def params():
  try:
    return se.load_params()
  except CheckpointError as err:  # Missing weights fail (with the install command), never skip.
    pytest.fail(str(err), pytrace=False)


def _mp3(name: str, sample_rate: int) -> np.ndarray:
  return load_audio(reference_path("audio", f"{name}.mp3"), sample_rate)


# --- front end ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_mel_and_partials_from_golden_wav(golden, name):
  partials, slices, mel = fe.partial_mels(golden[f"{name}_wav16k"])
  np.testing.assert_array_equal(slices, golden[f"{name}_mel_slices"])
  reference = golden[f"{name}_mel"]
  assert mel.shape == reference.shape and mel.dtype == np.float32
  # Power mels reach ~26 here; measured error <= 1.9e-6 absolute, 7.2e-8 of the maximum.
  assert np.abs(mel - reference).max() <= 1e-5 * reference.max()
  np.testing.assert_array_equal(partials, np.stack([mel[a:b] for a, b in slices]))


@pytest.mark.parametrize("name", NAMES)
def test_resampling_and_silence_trimming_from_mp3(golden, name):
  wav = fe.preprocess_wav(_mp3(name, SOURCE_SR)[:8 * SOURCE_SR], SOURCE_SR)
  reference = golden[f"{name}_wav16k"]
  assert wav.dtype == np.float32 and wav.shape == reference.shape  # same VAD decisions
  np.testing.assert_allclose(wav, reference, rtol=0, atol=1e-6)  # measured: bit-exact


def test_partial_slices_cover_short_and_ragged_lengths():
  # Shorter than one partial: still one, zero-padded; resemblyzer's rule for the last one.
  np.testing.assert_array_equal(fe.partial_slices(1000), [[0, 160]])
  three = fe.partial_slices(16000 * 3)  # 301 frames; the last partial is 91% audio: kept
  np.testing.assert_array_equal(three, [[0, 160], [77, 237], [154, 314]])
  np.testing.assert_array_equal(fe.partial_slices(16000 * 3, min_coverage=1.0)[:, 0], [0, 77])


def test_volume_is_only_ever_raised():
  rng = np.random.default_rng(0)
  quiet = (0.001 * rng.standard_normal(16000)).astype(np.float32)
  raised = fe.normalize_volume(quiet)
  dbfs = 20 * np.log10(np.sqrt(np.mean(raised.astype(np.float64) ** 2)))
  assert abs(dbfs - fe.TARGET_DBFS) < 1e-3
  loud = (0.3 * rng.standard_normal(16000)).astype(np.float32)
  assert fe.normalize_volume(loud) is loud


def test_bad_audio_is_a_one_line_error():
  with pytest.raises(AudioError, match="mono"):
    fe.preprocess_wav(np.zeros((2, 16000), np.float32), 16000)
  with pytest.raises(AudioError, match="silent"):
    fe.preprocess_wav(np.zeros(16000, np.float32), 16000)
  with pytest.raises(AudioError, match="NaN"):
    fe.preprocess_wav(np.full(16000, np.nan, np.float32), 16000)


# --- encoder -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_encoder_on_golden_partials(params, golden, name):
  partials = np.stack([golden[f"{name}_mel"][a:b] for a, b in golden[f"{name}_mel_slices"]])
  partial_embeds = se.embed_partials(params, partials)
  # Measured: <= 3.4e-7 (partials) and <= 1.2e-7 (utterance) on CPU.
  np.testing.assert_allclose(partial_embeds, golden[f"{name}_partial_embeds"], rtol=0, atol=1e-5)
  embed = se.average_embedding(partial_embeds)
  np.testing.assert_allclose(embed, golden[f"{name}_embed"], rtol=0, atol=1e-5)


def test_embeddings_and_similarities_from_mp3(params, golden):
  """The whole path, mp3 -> embeddings, reproduces resemblyzer's cosines 0.57 and 0.44."""
  wavs = [_mp3(name, SOURCE_SR)[:8 * SOURCE_SR] for name in NAMES]
  embeds = se.embed_utterances(params, wavs, SOURCE_SR)
  for name, embed in zip(NAMES, embeds):
    np.testing.assert_allclose(embed, golden[f"{name}_embed"], rtol=0, atol=1e-5)
  assert abs(se.embed_utterance(params, wavs[1], SOURCE_SR) - embeds[1]).max() < 1e-6
  speaker0, speaker2, reference = embeds
  for ours, key, published in ((se.similarity(speaker0, speaker2), "demo_speaker2", 0.57),
                               (se.similarity(speaker0, reference), "example_reference", 0.44)):
    theirs = se.similarity(golden["demo_speaker0_embed"], golden[f"{key}_embed"])
    assert abs(ours - theirs) < 1e-5  # measured 1.1e-7
    assert round(ours, 2) == published


def test_same_speaker_scores_high(params):
  """Two 10 s parts, a minute apart, of one 91 s recording: 0.934 measured; the other speakers'
  first 10 s score 0.52 (demo_speaker0) and 0.68 (example_reference) against the first part."""
  speaker1 = _mp3("demo_speaker1", 16000)
  first, later = speaker1[:10 * 16000], speaker1[60 * 16000:70 * 16000]
  others = [_mp3(name, 16000)[:10 * 16000] for name in ("demo_speaker0", "example_reference")]
  a, b, other0, other_ref = se.embed_utterances(params, [first, later, *others], 16000)
  same = se.similarity(a, b)
  assert same > 0.88
  assert same - max(se.similarity(a, other0), se.similarity(a, other_ref)) > 0.15
  np.testing.assert_allclose(se.similarity(np.stack([a, b]), np.stack([b, a])), [same, same])


def test_compilations_are_bounded_by_the_batch_buckets(params):
  """Utterances of many lengths reuse one compiled program per batch bucket."""
  speaker1 = _mp3("demo_speaker1", 16000)
  lengths_s = (1.5, 2.5, 4.0, 5.5, 7.0, 9.0, 11.0)
  wavs = [speaker1[int(s0 * 16000):int((s0 + s) * 16000)]
          for s0, s in zip((0, 5, 12, 20, 30, 40, 55), lengths_s)]
  counts = [len(fe.partial_mels(fe.preprocess_wav(w, 16000))[0]) for w in wavs]
  buckets = {se.batch_bucket(n) for n in counts}
  assert len(set(counts)) > len(buckets)  # the lengths really do differ in partials
  jax.clear_caches()
  for wav in wavs:
    se.embed_utterance(params, wav, 16000)
  assert se.encode_partials._cache_size() == len(buckets)  # pylint: disable=protected-access
  # A batch of many utterances (> 64 partials in all) runs in chunks of the largest bucket only.
  pieces = np.array_split(speaker1[:80 * 16000], 10)
  embeds = se.embed_utterances(params, pieces, 16000)
  assert embeds.shape == (10, 256)
  np.testing.assert_allclose(np.linalg.norm(embeds, axis=1), 1.0, atol=1e-6)
  assert se.encode_partials._cache_size() == len(buckets | {se.BUCKETS[-1]})


# --- weights -----------------------------------------------------------------------------------

def test_weights_are_found_in_order(monkeypatch, tmp_path):
  installed = se.find_weights()
  assert installed.name == "pretrained.pt"
  given = tmp_path / "given.pt"
  given.write_bytes(b"x")
  monkeypatch.setenv(se.WEIGHTS_ENV, str(installed))
  assert se.find_weights(given) == given
  assert se.find_weights() == installed
  monkeypatch.setenv(se.WEIGHTS_ENV, str(tmp_path / "nowhere.pt"))
  with pytest.raises(CheckpointError, match="nowhere.pt"):
    se.find_weights()


def test_missing_weights_say_how_to_install(monkeypatch, tmp_path):
  monkeypatch.delenv(se.WEIGHTS_ENV, raising=False)
  monkeypatch.setattr(se.importlib.util, "find_spec", lambda name: None)
  monkeypatch.setattr(se.Path, "home", classmethod(lambda cls: tmp_path))
  with pytest.raises(CheckpointError) as err:
    se.load_params()
  assert "pip install --no-deps resemblyzer==0.1.4" in str(err.value)
  assert "\n" not in str(err.value)
  cached = tmp_path / ".cache" / "ovjax" / "resemblyzer" / "pretrained.pt"
  cached.parent.mkdir(parents=True)
  cached.write_bytes(b"x")
  assert se.find_weights() == cached


def _fake_pip(monkeypatch, payload: bytes):
  """Stands in for `pip download`: leaves a wheel holding `payload` as the weights."""
  def run(cmd, **kwargs):
    del kwargs
    assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and se.WHEEL in cmd
    folder = Path(cmd[cmd.index("-d") + 1])
    with zipfile.ZipFile(folder / "Resemblyzer-0.1.4-py3-none-any.whl", "w") as wheel:
      wheel.writestr(se.WHEEL_MEMBER, payload)
    return se.subprocess.CompletedProcess(cmd, 0, "", "")
  monkeypatch.setattr(se.subprocess, "run", run)


def test_fetch_weights_extracts_and_verifies(monkeypatch, tmp_path):
  real = se.find_weights().read_bytes()
  _fake_pip(monkeypatch, real)
  target = tmp_path / "cache" / "pretrained.pt"
  assert se.fetch_weights(target) == target and target.read_bytes() == real
  _fake_pip(monkeypatch, real[:-1])
  other = tmp_path / "other" / "pretrained.pt"
  with pytest.raises(OvjaxError, match="SHA-256"):
    se.fetch_weights(other)
  assert not other.exists()


def _legacy_file(path: Path, body: bytes) -> Path:
  header = b"".join(pickle.dumps(x, protocol=2) for x in (
      se._LEGACY_MAGIC_NUMBER, se._LEGACY_PROTOCOL,  # pylint: disable=protected-access
      {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}))
  path.write_bytes(header + body + pickle.dumps([], protocol=2))
  return path


class _RunsCode:
  def __init__(self, marker: Path):
    self.marker = marker

  def __reduce__(self):
    return (os.mkdir, (str(self.marker),))


def test_legacy_reader_never_runs_code(tmp_path):
  marker = tmp_path / "ran"
  bad = _legacy_file(tmp_path / "bad.pt", pickle.dumps({"model_state": _RunsCode(marker)}, 2))
  with pytest.raises(CheckpointError, match="refusing to load .*mkdir"):
    se.load_params(bad)
  assert not marker.exists()


def test_legacy_pickle_that_would_build_gigabytes_is_refused_before_it_runs(tmp_path, monkeypatch):
  """1-byte opcodes can each build a container of ~200 bytes: the legacy reader costs every
  pickle's opcodes first, like the zip reader, so a file never builds more than ~32x its size."""
  ran = []
  monkeypatch.setattr(se._LegacyUnpickler, "load",  # pylint: disable=protected-access
                      lambda self: ran.append(1) or pickle.Unpickler.load(self))
  # ']' makes an empty list, '0' pops it: 2 bytes that keep ~384 bytes of bookkeeping busy.
  body = b"\x80\x02" + b"]0" * 600_000 + b"N."
  bomb = _legacy_file(tmp_path / "bomb.pt", body)
  with pytest.raises(CheckpointError, match="refusing to load .*would build more than"):
    se.load_params(bomb)
  assert len(ran) == 3  # Magic, protocol, system info: the object pickle never ran.


def test_damaged_weights_are_one_line_errors(tmp_path):
  real = se.find_weights().read_bytes()
  truncated = tmp_path / "truncated.pt"
  truncated.write_bytes(real[:len(real) // 2])
  with pytest.raises(CheckpointError, match="truncated"):
    se.load_params(truncated)
  empty_state = _legacy_file(tmp_path / "empty.pt", pickle.dumps({"model_state": {}}, 2))
  with pytest.raises(CheckpointError, match="missing .*lstm.weight_ih_l0"):
    se.load_params(empty_state)
  buffer = io.BytesIO()
  np.save(buffer, np.zeros(3))
  not_torch = tmp_path / "array.pt"
  not_torch.write_bytes(buffer.getvalue())
  with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
    se.load_params(not_torch)
