"""The epoch-by-epoch batch plan: length buckets with fixed shapes (pure NumPy, deterministic).

Like VITS' `DistributedBucketSampler`: an item goes to the smallest frame bucket that holds it
(items longer than the last bucket are left out and counted); each epoch shuffles every bucket,
pads it to a multiple of the global batch size by repeating its own items, cuts it into batches
and shuffles the batch order. Everything comes from (seed, epoch), so any process (or a resumed
run) computes the same plan, and a batch's shape is always one of `shapes`: (bucket frames,
the bucket's longest token count rounded up to `token_multiple`), so a jitted step compiles once
per bucket.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ovjax.errors import OvjaxError


class BucketPlan:
  """Batches of record indices per epoch, grouped by length into a few fixed shapes.

  Attributes:
    shapes: (frames, tokens) of each bucket in use (empty buckets are left out); a batch's
      bucket index points into this list.
    buckets: the record indices of each bucket (ascending).
    excluded: how many records were longer than the last bucket.
    steps_per_epoch: batches per epoch (the same every epoch).
  """

  def __init__(self, frames: Sequence[int], tokens: Sequence[int], global_batch_size: int,
               frame_buckets: Sequence[int], seed: int, token_multiple: int = 8):
    frames = np.asarray(frames, dtype=np.int64)
    tokens = np.asarray(tokens, dtype=np.int64)
    bounds = [int(b) for b in frame_buckets]
    if frames.shape != tokens.shape or frames.ndim != 1:
      raise OvjaxError("frames and tokens must be 1-D arrays of the same length")
    if global_batch_size < 1 or token_multiple < 1:
      raise OvjaxError("global_batch_size and token_multiple must be >= 1")
    if not bounds or any(b <= a for a, b in zip(bounds, bounds[1:])) or bounds[0] < 1:
      raise OvjaxError(f"frame_buckets must be ascending positive bounds, got {frame_buckets}")
    self.global_batch_size = int(global_batch_size)
    self.seed = int(seed)
    # Smallest bound >= frames; len(bounds) marks "too long".
    which = np.searchsorted(np.asarray(bounds), frames, side="left")
    self.excluded = int(np.sum(which == len(bounds)))
    self.buckets: list[np.ndarray] = []
    self.shapes: list[tuple[int, int]] = []
    for b, bound in enumerate(bounds):
      members = np.flatnonzero(which == b)
      if members.size == 0:
        continue
      longest = int(tokens[members].max())
      self.buckets.append(members)
      self.shapes.append((bound, -(-longest // token_multiple) * token_multiple))
    if not self.buckets:
      raise OvjaxError(f"no record fits the frame buckets (longest bucket {bounds[-1]} frames, "
                       f"shortest record {int(frames.min()) if frames.size else 'none'})")
    self.steps_per_epoch = sum(-(-m.size // self.global_batch_size) for m in self.buckets)

  def epoch(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """[(bucket index, int64 [global_batch_size] record indices)] for `epoch`, in order."""
    rng = np.random.default_rng([self.seed, int(epoch)])
    batches = []
    size = self.global_batch_size
    for b, members in enumerate(self.buckets):
      shuffled = rng.permutation(members)
      # Pad with the bucket's own items (whole copies, then a prefix), as VITS does.
      missing = (-shuffled.size) % size
      padded = np.concatenate([shuffled] * (1 + missing // shuffled.size)
                              + [shuffled[:missing % shuffled.size]])
      batches.extend((b, chunk) for chunk in padded.reshape(-1, size))
    return [batches[i] for i in rng.permutation(len(batches))]
