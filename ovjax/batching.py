"""Fixed shapes for jitted inference: lengths and batch sizes padded up to a few buckets.

Every distinct input shape costs a compilation. Padding frame counts to {1, 1.5} x 2^k and batch
sizes to powers of two means a stream of random lengths compiles O(log max_length) programs, and
padding wastes at most a third of the work.
"""
from __future__ import annotations

import math

import numpy as np


def bucket_frames(frames: int, minimum: int = 32) -> int:
  """Smallest bucket >= frames from {minimum * 2^k, 1.5 * minimum * 2^k}."""
  size = minimum
  while size < frames:
    half_step = size * 3 // 2
    size = half_step if half_step >= frames else size * 2
  return size


def bucket_batch(n: int, max_batch: int, multiple: int = 1) -> int:
  """Batch size padded to a power of two (capped at max_batch) and to a multiple of the device
  count, so the batch splits evenly across devices."""
  size = min(2**math.ceil(math.log2(max(n, 1))), max_batch)
  return math.ceil(size / multiple) * multiple


def batch_limit(bucket: int, max_batch: int, max_batch_frames: int | None = None) -> int:
  """The batch size for a bucket: max_batch, lowered (to a power of two) so that a batch holds
  at most max_batch_frames frames; activation memory grows with batch x frames."""
  if max_batch_frames is None:
    return max_batch
  cap = 2**int(math.log2(max(1, max_batch_frames // bucket)))
  return max(1, min(max_batch, cap))


def plan_batches(frame_counts, max_batch: int, minimum: int = 32,
                 max_batch_frames: int | None = None):
  """Group item indices by bucket, longest first, in batches of at most max_batch items (and
  max_batch_frames frames, see `batch_limit`).

  Returns [(bucket_frames, [item indices])]."""
  by_bucket: dict[int, list[int]] = {}
  for i, f in enumerate(frame_counts):
    by_bucket.setdefault(bucket_frames(f, minimum), []).append(i)
  plan = []
  for bucket in sorted(by_bucket, reverse=True):
    items = by_bucket[bucket]
    size = batch_limit(bucket, max_batch, max_batch_frames)
    for start in range(0, len(items), size):
      plan.append((bucket, items[start:start + size]))
  return plan


def pad_batch(arrays, length: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
  """Stack 1-D arrays into [batch, length] zero-padded; rows past len(arrays) repeat row 0
  (real data, so padding rows never produce NaNs) and are discarded by the caller."""
  out = np.zeros((batch, length), np.float32)
  lengths = np.zeros(batch, np.int32)
  for i in range(batch):
    a = arrays[i] if i < len(arrays) else arrays[0]
    out[i, :len(a)] = a
    lengths[i] = len(a)
  return out, lengths


def item_keys(seed, n: int):
  """One PRNG key per item, so an item's noise never depends on what it is batched with.

  seed: an int (item i gets key(seed) folded with i), a list of ints (item i gets key(seed[i])
  folded with 0: what a one-item call with that seed gives), or a list of tuples
  (seed, index, ...) folded in turn (e.g. (text seed, text index, piece index))."""
  import jax  # Deferred: this module is also used by code that must not import JAX.
  if isinstance(seed, (int, np.integer)):
    paths = [(int(seed), i) for i in range(n)]
  else:
    paths = [(int(s), 0) if isinstance(s, (int, np.integer)) else tuple(int(x) for x in s)
             for s in seed]
    if len(paths) != n:
      raise ValueError(f"{len(paths)} seeds for {n} items")
  keys = []
  for path in paths:
    key = jax.random.key(path[0])
    for index in path[1:]:
      key = jax.random.fold_in(key, index)
    keys.append(key)
  return jax.numpy.stack(keys)
