"""Orbax checkpoints of a training run: the train state (parameters, optimiser states, step,
PRNG) and the data iterator's position, saved together every N steps (asynchronously), the
newest K kept, restored as a unit so a resumed run continues exactly.

Orbax writes each step to a temporary folder and renames it when complete, so a run killed
mid-save (even with kill -9) leaves the previous checkpoint as the latest.
"""
from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from ovjax.errors import CheckpointError


class RunCheckpoints:
  def __init__(self, directory, every: int, keep: int):
    self.every = every
    self.manager = ocp.CheckpointManager(
        Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True,
                                             cleanup_tmp_directories=True))

  @property
  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_state: dict, force: bool = False) -> bool:
    """Starts an asynchronous save when `step` is due (or `force`); returns whether it did."""
    if not force and step % self.every:
      return False
    return self.manager.save(step, force=True, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)))

  def restore(self, abstract_state, step: int | None = None):
    """(state placed as `abstract_state`'s shardings, data iterator state) of `step` (latest)."""
    step = self.latest_step if step is None else step
    if step is None:
      raise CheckpointError("no checkpoint to restore")
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        abstract_state)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises many types; one line for the user.
      raise CheckpointError(f"cannot restore the checkpoint of step {step} "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return restored.state, restored.data

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
