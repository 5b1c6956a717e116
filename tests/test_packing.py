"""Packing several utterances into one row: the plan's invariants, each utterance's output equal
to converting it alone, the gap that makes it so, little padding, few compilations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ovjax import batching, chunking, packing
from ovjax.api import ToneColorConverter
from ovjax.models import converter as cv

from conftest import reference_path


def _stream(rng, n, low=1.0, high=20.0, rate=22050, hop=256):
  """Frame counts of n utterances of low..high seconds (uniform in length)."""
  return [int(s * rate) // hop for s in rng.uniform(low, high, n)]


@pytest.mark.parametrize("seed", range(5))
def test_plan_places_every_piece_once_without_overlap(seed):
  rng = np.random.default_rng(seed)
  frames = [int(f) for f in rng.integers(1, 2048, 200)]
  gap = 4
  rows = packing.plan_rows(frames, 2048, gap, max_segments=8)
  placed = sorted(p for r in rows for p, _ in r.segments)
  assert placed == list(range(len(frames)))
  for row in rows:
    spans = sorted((offset, offset + frames[p]) for p, offset in row.segments)
    assert spans[0][0] == 0 and len(spans) <= 8
    for (_, end), (start, _) in zip(spans, spans[1:]):
      assert start - end >= gap
    assert spans[-1][1] <= row.frames <= 2048
    assert row.frames == min(2048, batching.fine_bucket_frames(spans[-1][1]))


def test_row_lengths_waste_at_most_a_sixteenth():
  for n in range(1, 5000):
    r = batching.fine_bucket_frames(n)
    assert n <= r and (r <= 32 or r - n < n / 16 + 1), n
  assert batching.fine_bucket_frames(861) == 864  # 10 s at 22050 Hz: not the 1024 bucket.


def test_split_batches_pads_nothing():
  assert packing.split_batches(7, 8) == [4, 2, 1]
  assert packing.split_batches(19, 8) == [8, 8, 2, 1]
  assert packing.split_batches(3, 1) == [1, 1, 1]


def test_a_mixed_stream_wastes_under_five_percent():
  """Utterances of 1-20 s, uniform in length: useful / computed frames >= 0.95 with packing;
  the power-of-two buckets it replaced computed 1.2x the useful frames."""
  rng = np.random.default_rng(7)
  for n in (20, 200):
    frames = _stream(rng, n)
    pieces = [p for i, f in enumerate(frames) for p in chunking.plan_pieces(i, f, 2048)]
    rows = packing.plan_rows([p.frames for p in pieces], 2048, 4)
    assert packing.useful_fraction([p.frames for p in pieces], rows) >= 0.95, n
    assert sum(frames) / sum(batching.bucket_frames(f) for f in frames) < 0.9
    assert len({r.frames for r in rows}) <= 12


def test_min_gap_covers_every_layer(converters):
  config = converters["converter_v2_small"][0]
  gap = packing.min_gap(config)
  # The STFT window overhangs (1024 - 256) / 256 = 3 frames; the decoder's widest resblock conv
  # (kernel 11, dilation 5: 25 samples) at 8 samples per frame reaches into a 4th.
  assert gap == 4


@pytest.fixture(scope="module")
def tcc():
  return ToneColorConverter.from_pretrained(reference_path("openvoice", "converter_v2_small"),
                                            max_batch=2)


@pytest.fixture(scope="module")
def speech(converters):
  golden = converters["converter_v2_small"][2]
  src, tgt = golden["src_audio"], golden["tgt_audio"]
  return [src[:20000], tgt[:9001], src[3000:40123], tgt[:30000], src[8000:9100]]


def _alone(tcc, wave, src, tgt, tau, key):
  """One utterance through the unpacked, length-masked path."""
  frames = batching.bucket_frames(len(wave) // 256)
  audio, lengths = batching.pad_batch([wave], cv.input_width(frames, tcc.config), 1)
  out, n = cv.convert_audio(tcc.params, jnp.asarray(audio), jnp.asarray(lengths),
                            jnp.asarray(src)[None], jnp.asarray(tgt)[None], tau, key[None],
                            config=tcc.config)
  return np.asarray(out)[0, :int(n[0])]


@pytest.mark.parametrize("tau", [0.0, 0.7])
def test_packed_row_equals_each_utterance_alone(tcc, speech, tau):
  """Five utterances (one of 4 frames) share one row, each with its own embeddings and noise;
  each comes out as it does alone (v2 converter, real speech, 1e-4)."""
  rng = np.random.default_rng(1)
  src = rng.standard_normal((len(speech), tcc.config.gin_channels)).astype(np.float32)
  tgt = rng.standard_normal((len(speech), tcc.config.gin_channels)).astype(np.float32)
  keys = batching.item_keys(9, len(speech))
  calls = tcc.packed_calls(speech, src, tgt, tau, keys)
  assert len(calls) == 1 and len(calls[0].rows) == 1
  assert len(calls[0].rows[0].segments) == len(speech)
  packed = tcc.convert(speech, list(src), list(tgt), tau=tau, seed=9)
  for i, wave in enumerate(speech):
    alone = _alone(tcc, wave, src[i], tgt[i], tau, keys[i])
    np.testing.assert_allclose(packed[i], alone, atol=1e-4, rtol=0)


def test_a_narrower_gap_would_leak(tcc, speech):
  """The guard for the test above: packed with `min_gap` frames between them, utterances come
  out as they do each in a row of its own (to float rounding); one frame less and the decoder's
  widest conv reaches across (by one sample: ~1e-4), no gap at all and every layer does."""
  rng = np.random.default_rng(2)
  src, tgt = rng.standard_normal((2, tcc.config.gin_channels)).astype(np.float32)
  alone = [tcc.convert(w, src, tgt, tau=0.0) for w in speech[:3]]
  error = lambda outs: max(np.max(np.abs(a - b)) for a, b in zip(outs, alone))
  exact = error(tcc.convert(speech[:3], src, tgt, tau=0.0))
  assert exact < 1e-5
  gap = tcc.gap
  try:
    tcc.gap = gap - 1
    assert error(tcc.convert(speech[:3], src, tgt, tau=0.0)) > max(20 * exact, 2e-5)
    tcc.gap = 0
    assert error(tcc.convert(speech[:3], src, tgt, tau=0.0)) > 1e-2
  finally:
    tcc.gap = gap


def test_pieces_of_long_items_pack_with_short_ones(tcc, speech):
  """A long item cut into pieces (max_frames 512) shares rows with short items and still equals
  the single pass (to the cross-fade's rounding, as in test_chunking)."""
  config, params = tcc.config, tcc.params
  small = ToneColorConverter(config, params, max_frames=512, max_batch=2)
  whole = ToneColorConverter(config, params, max_frames=10**6, max_batch=1)
  long = np.concatenate([speech[2]] * 5)  # ~8.6 s, 3 pieces at 512 frames.
  waves = [long, speech[1], speech[4]]
  rng = np.random.default_rng(3)
  src, tgt = rng.standard_normal((2, config.gin_channels)).astype(np.float32)
  a = small.convert(waves, src, tgt, tau=0.3, seed=4)
  b = whole.convert(waves, src, tgt, tau=0.3, seed=4)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, atol=1e-3, rtol=0)


def test_a_stream_compiles_a_bounded_number_of_times(tcc):
  """Two passes over 40 random lengths (0.1-9 s): one program per distinct row length and batch
  size, and the second pass reuses nearly all of them."""
  rng = np.random.default_rng(4)
  waves = [0.1 * rng.standard_normal(n).astype(np.float32)
           for n in rng.integers(2205, 9 * 22050, 40)]
  src, tgt = rng.standard_normal((2, tcc.config.gin_channels)).astype(np.float32)
  jax.clear_caches()
  before = cv.convert_packed._cache_size()
  tcc.convert(waves, src, tgt, tau=0.0)
  first = cv.convert_packed._cache_size() - before
  more = [0.1 * rng.standard_normal(n).astype(np.float32)
          for n in rng.integers(2205, 9 * 22050, 40)]
  tcc.convert(more, src, tgt, tau=0.0)
  second = cv.convert_packed._cache_size() - before - first
  assert first <= 8 and second <= 4, (first, second)
