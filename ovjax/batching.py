"""Fixed shapes for jitted inference: lengths and batch sizes padded up to a few buckets.

Every distinct input shape costs a compilation. Padding frame counts to {1, 1.5} x 2^k and batch
sizes to powers of two means a stream of random lengths compiles O(log max_length) programs, and
padding wastes at most a third of the work.

It also holds the ranges of every number a user passes (seeds, speed, noise, tau) and the text
length limit, so the CLI, the Python API and batch jobs refuse the same values with the same
message. Nothing here imports NumPy or JAX at module level: `ovjax --help` imports it.
"""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING

from ovjax.errors import OvjaxError, TextError

if TYPE_CHECKING:
  import numpy as np

# -- ranges of user numbers ------------------------------------------------------------------------
# Seeds: jax.random.key keeps only the low 32 bits without jax_enable_x64 (key(2**32) == key(0),
# key(-1) == key(2**32 - 1)) and overflows past 2**63, so [0, 2**32) is every distinct seed.
SEED_LIMIT = 2**32  # Seeds are integers in [0, SEED_LIMIT).
# name -> (low, high), both inclusive. A speed of 1e-6 would ask for a million-times longer output.
NUMBER_RANGES = {
    "speed": (0.1, 10.0),
    "noise_scale": (0.0, 10.0),
    "noise_scale_w": (0.0, 10.0),
    "sdp_ratio": (0.0, 1.0),
    "tau": (0.0, 10.0),
}
MAX_TEXT_CHARS = 20_000  # Per text: about 20 minutes of speech.
MAX_NAME_CHARS = 255  # A batch job's id or out.


def check_number(name: str, value, label: str | None = None, error=OvjaxError,
                 shown: str | None = None) -> float:
  """value as a float if it is a real number within NUMBER_RANGES[name], else `error` naming
  label (default: name) and showing the value as `shown` (default: its repr)."""
  label = name if label is None else label
  low, high = NUMBER_RANGES[name]
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if ok:
    try:
      value = float(value)
    except (OverflowError, ValueError):
      ok = False
  if not (ok and math.isfinite(value) and low <= value <= high):
    got = show(value) if shown is None else shown
    if ok and low > 0 and value <= 0:  # A speed of 0: say first that it must be positive.
      message = f"must be a finite number > 0, got {got}; the range is [{low:g}, {high:g}]"
    else:
      message = f"must be a finite number in [{low:g}, {high:g}], got {got}"
    raise error(f"{label} {message}".strip())
  return value


def check_seed(value, label: str = "seed", error=OvjaxError) -> int:
  """value as an int if it is an integer (not a bool) in [0, SEED_LIMIT), else `error`."""
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or not 0 <= int(value) < SEED_LIMIT):
    raise error(f"{label} must be an integer in [0, {SEED_LIMIT - 1}], got {show(value)}")
  return int(value)


def check_text(text, label: str = "text", error=TextError) -> None:
  """At most MAX_TEXT_CHARS characters."""
  if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
    raise error(f"{label}: {len(text)} characters, more than the {MAX_TEXT_CHARS} allowed per "
                "text (split it)")


def show(value, limit: int = 40) -> str:
  """A short printable form of any value (huge ints and deep nesting included)."""
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    value = int(value)
    if value.bit_length() > 64:
      return f"an integer of {value.bit_length()} bits"
  try:
    text = repr(value)
  except (ValueError, RecursionError):
    text = type(value).__name__
  return text if len(text) <= limit else text[:limit - 3] + "..."


def bucket_frames(frames: int, minimum: int = 32) -> int:
  """Smallest bucket >= frames from {minimum * 2^k, 1.5 * minimum * 2^k}."""
  size = minimum
  while size < frames:
    half_step = size * 3 // 2
    size = half_step if half_step >= frames else size * 2
  return size


def fine_bucket_frames(frames: int, minimum: int = 32, steps: int = 16) -> int:
  """Smallest multiple of 2^k / steps >= frames, for the octave (2^k, 2^(k+1)] frames lies in
  (at least `minimum`): at most 1/steps of the work is padding, for steps programs an octave.
  Packed converter rows and TTS synthesis use it; a persistent compilation cache makes the
  extra programs a one-time cost."""
  if frames <= minimum:
    return minimum
  step = max(1, 2**(math.ceil(math.log2(frames)) - 1) // steps)
  return -(-frames // step) * step


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
  import numpy as np
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
  (seed, index, ...) folded in turn (e.g. (text seed, text index, piece index)).
  Every seed (the first of a tuple) must pass `check_seed`."""
  import jax  # Deferred: this module is also used by code that must not import JAX.
  if isinstance(seed, numbers.Integral):
    paths = [(check_seed(seed), i) for i in range(n)]
  elif isinstance(seed, (str, bytes)) or not hasattr(seed, "__iter__"):
    raise OvjaxError(f"seed must be an integer or a list of them, got {show(seed)}")
  else:
    paths = []
    for s in seed:
      if isinstance(s, numbers.Integral):
        paths.append((check_seed(s), 0))
      elif (isinstance(s, (tuple, list)) and s
            and all(isinstance(x, numbers.Integral) for x in s)):
        paths.append((check_seed(s[0]),) + tuple(int(x) for x in s[1:]))
      else:
        raise OvjaxError(f"seed must be an integer or a list of them, got {show(s)} in the list")
    if len(paths) != n:
      raise ValueError(f"{len(paths)} seeds for {n} items")
  keys = []
  for path in paths:
    key = jax.random.key(path[0])
    for index in path[1:]:
      key = jax.random.fold_in(key, index)
    keys.append(key)
  return jax.numpy.stack(keys)
