"""A padded batch gives each item what it gets alone; buckets bound the compilations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ovjax import batching
from ovjax.api import ToneColorConverter
from ovjax.models import converter as cv

from conftest import reference_path


@pytest.fixture(scope="module")
def tcc():
  return ToneColorConverter.from_pretrained(reference_path("openvoice", "converter_v1_small"),
                                            max_batch=4)


@pytest.fixture(scope="module")
def waves(converters):
  """Real speech of ragged lengths (including non-multiples of the hop)."""
  golden = converters["converter_v1_small"][2]
  src, tgt = golden["src_audio"], golden["tgt_audio"]
  return [src[:13000], tgt[:40001], src[5000:30999], tgt, src[:9000 + 77]]


def test_batched_embeddings_equal_one_by_one(tcc, waves):
  batched = tcc.embed(waves)
  for i, w in enumerate(waves):
    alone = tcc.embed([w])[0]
    np.testing.assert_allclose(batched[i], alone, atol=1e-4, rtol=0)
  # Different utterances really give different embeddings (padding did not flatten them).
  assert np.max(np.abs(batched[0] - batched[1])) > 1e-3


@pytest.mark.parametrize("tau", [0.0, 0.3])
def test_batched_conversion_equals_one_by_one(tcc, waves, tau):
  rng = np.random.default_rng(0)
  src = [rng.standard_normal(tcc.config.gin_channels).astype(np.float32) for _ in waves]
  tgt = [rng.standard_normal(tcc.config.gin_channels).astype(np.float32) for _ in waves]
  batched = tcc.convert(waves, src, tgt, tau=tau, seed=5)
  for i, w in enumerate(waves):
    assert len(batched[i]) == (len(w) // 256) * 256
  # One by one with the same per-item key (fold_in(seed, i)): call the jitted function directly.
  for i, w in enumerate(waves):
    frames = batching.bucket_frames(len(w) // 256)
    audio, lengths = batching.pad_batch([w], cv.input_width(frames, tcc.config), 1)
    key = jax.random.fold_in(jax.random.key(5), i)[None]
    out, n = cv.convert_audio(tcc.params, jnp.asarray(audio), jnp.asarray(lengths),
                              jnp.asarray(src[i])[None], jnp.asarray(tgt[i])[None], tau, key,
                              config=tcc.config)
    np.testing.assert_allclose(batched[i], np.asarray(out)[0, :int(n[0])], atol=1e-4, rtol=0)


def test_padding_without_masks_would_leak(tcc, waves):
  """Guard for the test above: a 40-frame item padded into buckets of 64 and 192 frames with
  loud noise (not silence) in the padding. With its true length the output is the same in both
  buckets and equal to the zero-padded one; told the padded width instead (so no frame is
  masked), the padding reaches the item's own frames."""
  w = waves[0][:40 * 256 + 100]
  rng = np.random.default_rng(0)
  src = jnp.zeros((1, tcc.config.gin_channels)) + 0.1
  tgt = jnp.zeros((1, tcc.config.gin_channels)) - 0.1

  def run(audio, lengths):
    out, n = cv.convert_audio(tcc.params, jnp.asarray(audio), jnp.asarray(lengths), src, tgt,
                              0.0, jax.random.key(0)[None], config=tcc.config)
    return np.asarray(out)[0], int(n[0])

  clean, n_clean = run(*batching.pad_batch([w], cv.input_width(64, tcc.config), 1))
  clean = clean[:n_clean]
  for frames in (64, 192):
    audio, lengths = batching.pad_batch([w], cv.input_width(frames, tcc.config), 1)
    audio[0, len(w):] = 0.5 * rng.standard_normal(audio.shape[1] - len(w))
    masked, n = run(audio, lengths)
    np.testing.assert_allclose(masked[:n], clean, atol=1e-4, rtol=0)
    unmasked, _ = run(audio, np.full_like(lengths, audio.shape[1]))
    assert np.max(np.abs(unmasked[:n_clean] - clean)) > 1e-2, frames


def test_bucket_shapes():
  assert [batching.bucket_frames(n) for n in (1, 32, 33, 48, 49, 64, 65, 97, 1000)] == \
      [32, 32, 48, 48, 64, 64, 96, 128, 1024]
  for n in range(1, 5000, 7):
    b = batching.bucket_frames(n)
    assert n <= b and (b <= 32 or b < 1.51 * n)
  assert batching.bucket_batch(3, 8) == 4 and batching.bucket_batch(9, 8) == 8
  assert batching.bucket_batch(1, 8, multiple=4) == 4


def test_random_lengths_compile_a_bounded_number_of_times(tcc):
  """60 random lengths between 0.1 s and 12 s: compilations are bounded by the bucket count
  (frame buckets x batch buckets), far fewer than the distinct lengths."""
  rng = np.random.default_rng(1)
  lengths = rng.integers(2205, 12 * 22050, size=60)
  waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in lengths]
  frame_buckets = {batching.bucket_frames(n // 256) for n in lengths}
  jax.clear_caches()
  before = cv.extract_se._cache_size()
  tcc.embed(waves)
  compiled = cv.extract_se._cache_size() - before
  # Each frame bucket compiles at most once per batch bucket (1, 2, 4 with max_batch 4).
  assert compiled <= 3 * len(frame_buckets)
  assert compiled < len(set(lengths.tolist())) / 3
  # A second pass over new random lengths in the same range compiles little or nothing new.
  more = [0.1 * rng.standard_normal(n).astype(np.float32)
          for n in rng.integers(2205, 12 * 22050, size=60)]
  tcc.embed(more)
  assert cv.extract_se._cache_size() - before <= 3 * len(frame_buckets | {
      batching.bucket_frames(len(w) // 256) for w in more})


def test_per_item_seeds_make_items_independent_of_their_batch(tcc, waves):
  """With one seed per item, an item's noise (tau > 0) is what converting it alone gives."""
  rng = np.random.default_rng(3)
  src, tgt = rng.standard_normal((2, tcc.config.gin_channels)).astype(np.float32)
  batched = tcc.convert(waves[:3], src, tgt, tau=0.5, seed=[11, 12, 13])
  for w, seed, out in zip(waves[:3], (11, 12, 13), batched):
    np.testing.assert_allclose(out, tcc.convert(w, src, tgt, tau=0.5, seed=seed), atol=1e-4, rtol=0)
  assert np.max(np.abs(batched[1] - tcc.convert(waves[1], src, tgt, tau=0.5, seed=99))) > 1e-4


def test_batch_limit_bounds_frames_per_batch():
  assert batching.batch_limit(256, 8, 6144) == 8
  assert batching.batch_limit(1536, 8, 6144) == 4
  assert batching.batch_limit(4096, 8, 6144) == 1
  assert batching.batch_limit(1536, 8, None) == 8
  plan = batching.plan_batches([1500] * 10 + [100] * 3, 8, max_batch_frames=6144)
  assert [(b, len(items)) for b, items in plan] == [(1536, 4), (1536, 4), (1536, 2), (128, 3)]
