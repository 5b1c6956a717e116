"""Long inputs converted in pieces equal the single-pass conversion."""
import numpy as np
import pytest

from ovjax import chunking
from ovjax.api import ToneColorConverter
from ovjax.audio.io import load_audio

from conftest import reference_path


@pytest.fixture(scope="module")
def minute_of_speech():
  return load_audio(reference_path("audio", "demo_speaker1.mp3"), 22050)[:22050 * 60 + 123]


def test_plan_covers_every_frame_once():
  for total in (1, 1536, 1537, 5000, 12345):
    pieces = chunking.plan_pieces(0, total, 1536)
    assert all(p.frames <= 1536 and p.start % chunking.ALIGN == 0 for p in pieces)
    covered = np.zeros(total, int)
    for p in pieces:
      assert p.start <= p.keep_start and p.keep_end <= p.start + p.frames
      covered[p.keep_start:p.keep_end] += 1
    assert covered.min() >= 1 and covered.max() <= 2  # overlaps only in the cross-fades


@pytest.mark.parametrize("tau", [0.0, 0.3])
def test_sixty_seconds_in_pieces_equal_single_pass(minute_of_speech, tau):
  folder = reference_path("openvoice", "converter_v1_small")
  pieces = ToneColorConverter.from_pretrained(folder, max_frames=1024, max_batch=2)
  whole = ToneColorConverter.from_pretrained(folder, max_frames=10**6, max_batch=1)
  rng = np.random.default_rng(0)
  src, tgt = rng.standard_normal((2, pieces.config.gin_channels)).astype(np.float32)
  assert len(chunking.plan_pieces(0, len(minute_of_speech) // 256, 1024)) >= 6
  a = pieces.convert(minute_of_speech, src, tgt, tau=tau, seed=1)
  b = whole.convert(minute_of_speech, src, tgt, tau=tau, seed=1)
  assert a.shape == b.shape == ((len(minute_of_speech) // 256) * 256,)
  assert np.max(np.abs(a - b)) < 1e-3
  assert np.max(np.abs(b)) > 1e-3  # not trivially silent
