"""Fixed-shape training batches read and padded by Grain in background threads, resumable.

`TrainLoader` walks the `BucketPlan` epoch after epoch; global step s is batch s % steps of
epoch s // steps. Grain maps "step -> padded batch" over a `MapDataset.range` of steps and reads
ahead with `num_threads` threads and a `prefetch`-batch buffer, in order. Each process reads only
its rows [p*B/P, (p+1)*B/P) of every global batch. The state is the position of the next batch,
{"epoch": e, "index": i}; `set_state` restarts reading there, so a restored run sees exactly the
batches an uninterrupted one would have.

A batch (numpy):
  ids int32 [b, T_bucket] (0-padded), id_lengths int32 [b],
  audio float32 [b, F_bucket * hop + hop] (int16 / 32768, 0-padded), audio_lengths int32 [b],
  frame_lengths int32 [b] (= audio_lengths // hop), speaker_id int32 [b], epoch, index (ints).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
import threading

import grain
import numpy as np

from ovjax.data.sampler import BucketPlan
from ovjax.errors import OvjaxError

# Steps one Grain pipeline spans before the next is started (effectively endless).
_SPAN = 1 << 40


def _read(source, indices: Sequence[int]) -> list[dict]:
  getitems = getattr(source, "__getitems__", None)
  if getitems is not None:
    return list(getitems([int(i) for i in indices]))
  return [source[int(i)] for i in indices]


def pad_records(records: Sequence[dict], hop_length: int, frames: int, tokens: int) -> dict:
  """Records -> the batch layout, padded to `frames` frames and `tokens` ids.

  Raises:
    OvjaxError: a record is longer than the shape.
  """
  b = len(records)
  batch = {
      "ids": np.zeros((b, tokens), np.int32),
      "id_lengths": np.zeros((b,), np.int32),
      "audio": np.zeros((b, frames * hop_length + hop_length), np.float32),
      "audio_lengths": np.zeros((b,), np.int32),
      "frame_lengths": np.zeros((b,), np.int32),
      "speaker_id": np.zeros((b,), np.int32),
  }
  for row, record in enumerate(records):
    ids, audio = np.asarray(record["ids"]), np.asarray(record["audio"])
    if ids.size > tokens or audio.size // hop_length > frames:
      raise OvjaxError(f"record of {audio.size // hop_length} frames and {ids.size} ids does not "
                       f"fit the batch shape ({frames} frames, {tokens} ids)")
    batch["ids"][row, :ids.size] = ids
    batch["id_lengths"][row] = ids.size
    batch["audio"][row, :audio.size] = audio.astype(np.float32) / 32768.0
    batch["audio_lengths"][row] = audio.size
    batch["frame_lengths"][row] = audio.size // hop_length
    batch["speaker_id"][row] = record["speaker_id"]
  return batch


def eval_batch(source, indices: Sequence[int], hop_length: int, frames: int | None = None,
               tokens: int | None = None) -> dict:
  """The records at `indices` as one batch (the training layout, without epoch/index).

  `frames`/`tokens` default to the longest record (tokens rounded up to a multiple of 8); give
  them to keep one shape across evaluations.
  """
  records = _read(source, indices)
  if not records:
    raise OvjaxError("eval_batch needs at least one index")
  if frames is None:
    frames = max(np.asarray(r["audio"]).size // hop_length for r in records)
  if tokens is None:
    tokens = -(-max(np.asarray(r["ids"]).size for r in records) // 8) * 8
  return pad_records(records, hop_length, int(frames), int(tokens))


class TrainLoader:
  """Endless fixed-shape training batches for this process, resumable from `get_state()`."""

  def __init__(self, source, plan: BucketPlan, hop_length: int, *,
               process_index: int | None = None, process_count: int | None = None,
               num_threads: int = 2, prefetch: int = 4):
    if process_index is None or process_count is None:
      import jax  # pylint: disable=import-outside-toplevel
      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
      raise OvjaxError(f"process_index {process_index} outside 0..{process_count - 1}")
    if plan.global_batch_size % process_count:
      raise OvjaxError(f"global batch {plan.global_batch_size} does not split over "
                       f"{process_count} processes")
    rows = plan.global_batch_size // process_count
    self._rows = slice(process_index * rows, (process_index + 1) * rows)
    self._source, self._plan, self._hop = source, plan, int(hop_length)
    self._read_options = grain.ReadOptions(num_threads=num_threads,
                                           prefetch_buffer_size=prefetch)
    self._next_step = 0   # global step of the next batch __iter__ yields
    self._restarts = 0    # bumped by set_state, so a running iterator starts over
    self._epochs: dict[int, list] = {}
    self._lock = threading.Lock()

  @property
  def steps_per_epoch(self) -> int:
    return self._plan.steps_per_epoch

  def _epoch_plan(self, epoch: int) -> list:
    with self._lock:
      if epoch not in self._epochs:
        # Reading threads only look an epoch ahead, so two plans are enough to keep.
        for old in [e for e in self._epochs if e < epoch - 1]:
          del self._epochs[old]
        self._epochs[epoch] = self._plan.epoch(epoch)
      return self._epochs[epoch]

  def batch_at(self, step: int) -> dict:
    """This process' part of global batch `step` (what `__iter__` yields there)."""
    epoch, index = divmod(int(step), self._plan.steps_per_epoch)
    bucket, indices = self._epoch_plan(epoch)[index]
    frames, tokens = self._plan.shapes[bucket]
    batch = pad_records(_read(self._source, indices[self._rows]), self._hop, frames, tokens)
    batch["epoch"], batch["index"] = epoch, index
    return batch

  def __iter__(self) -> Iterator[dict]:
    while True:
      restarts, start = self._restarts, self._next_step
      dataset = (grain.MapDataset.range(start, start + _SPAN).map(self.batch_at)
                 .to_iter_dataset(self._read_options))
      iterator = iter(dataset)
      try:
        for batch in iterator:
          if self._restarts != restarts:
            break  # set_state moved the position: read from there instead.
          self._next_step = batch["epoch"] * self._plan.steps_per_epoch + batch["index"] + 1
          yield batch
          if self._restarts != restarts:
            break
      finally:
        iterator.close()

  def get_state(self) -> dict:
    """Position of the next batch: {"epoch": e, "index": i} (JSON-able)."""
    epoch, index = divmod(self._next_step, self._plan.steps_per_epoch)
    return {"epoch": int(epoch), "index": int(index)}

  def set_state(self, state: dict) -> None:
    """Makes the next batch the one at `state` (from `get_state`)."""
    try:
      epoch, index = int(state["epoch"]), int(state["index"])
    except (KeyError, TypeError, ValueError):
      raise OvjaxError(f"loader state must be {{'epoch': int, 'index': int}}, got {state!r}"
                       ) from None
    if epoch < 0 or not 0 <= index < self._plan.steps_per_epoch:
      raise OvjaxError(f"loader state {state!r} is outside the plan ({self._plan.steps_per_epoch}"
                       " batches per epoch)")
    self._next_step = epoch * self._plan.steps_per_epoch + index
    self._restarts += 1
