"""Tone-colour extraction on real recordings: VAD segments, averaging, short and long references."""
import numpy as np
import pytest

from ovjax.api import ToneColorConverter
from ovjax.audio.io import load_audio
from ovjax.audio.vad import embedding_segments
from ovjax.errors import AudioError

from conftest import reference_path

SR = 22050


@pytest.fixture(scope="module")
def tcc():
  return ToneColorConverter.from_pretrained(reference_path("openvoice", "converter_v2_small"))


@pytest.fixture(scope="module")
def speaker1():
  return load_audio(reference_path("audio", "demo_speaker1.mp3"), SR)


def test_no_vad_matches_reference_extract_se(tcc, converters):
  golden = converters["converter_v2_small"][2]
  se = tcc.extract_se([golden["tgt_audio"]], use_vad=False)
  np.testing.assert_allclose(se, golden["tgt_se"][0, :, 0], atol=1e-4, rtol=0)
  # Several files without VAD: the mean of their embeddings (the reference's extract_se(list)).
  both = tcc.extract_se([golden["src_audio"], golden["tgt_audio"]], use_vad=False)
  np.testing.assert_allclose(both, (golden["src_se"] + golden["tgt_se"])[0, :, 0] / 2, atol=1e-4)


def test_vad_mean_over_segments_of_all_references(tcc, speaker1):
  a, b = speaker1[:SR * 25], speaker1[SR * 40:SR * 52]
  seg_a = embedding_segments(a, SR, name="a")
  seg_b = embedding_segments(b, SR, name="b")
  assert len(seg_a) == 2 and len(seg_b) == 1
  per_segment = tcc.embed(seg_a + seg_b)
  np.testing.assert_allclose(tcc.extract_se([a, b]), per_segment.mean(axis=0), atol=1e-5)


def test_mp3_references_on_disk(tcc):
  paths = [reference_path("audio", n) for n in ("demo_speaker0.mp3", "example_reference.mp3")]
  se0, se_ref = tcc.extract_se(paths[0]), tcc.extract_se(paths[1])
  assert se0.shape == (tcc.config.gin_channels,) and np.all(np.isfinite(se0))
  assert np.max(np.abs(se0 - se_ref)) > 1e-3


def test_one_second_reference(tcc, speaker1):
  """The reference implementation fails under ~5 s of speech; ovjax embeds what there is."""
  one_second = speaker1[SR * 3:SR * 4]
  se = tcc.extract_se(one_second)
  assert np.all(np.isfinite(se))


def test_ten_minute_reference(tcc, speaker1):
  long = np.tile(speaker1, 7)[:SR * 600]
  segments = embedding_segments(long, SR)
  assert 45 <= len(segments) <= 62  # ~10 s each, over the speech only
  se = tcc.extract_se(long)
  # The same speaker repeated: close to the embedding of one copy.
  assert np.all(np.isfinite(se))
  assert np.max(np.abs(se - tcc.extract_se(speaker1))) < 0.2 * np.max(np.abs(se))


@pytest.mark.parametrize("make", ["silence", "noise"])
def test_no_speech_is_an_error(tcc, make):
  rng = np.random.default_rng(0)
  audio = (np.zeros(SR * 3) if make == "silence" else 1e-3 * rng.standard_normal(SR * 3))
  with pytest.raises(AudioError) as e:
    tcc.extract_se(audio.astype(np.float32))
  assert "\n" not in str(e.value)
