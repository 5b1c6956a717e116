"""A trained run -> an inference folder that `ovjax convert/tts/clone` (and the official OpenVoice
code) load: the official layout (config.json + a checkpoint.pth written without PyTorch, weight
norm as weight_g/weight_v) or an ovjax/Orbax folder. Training-only parts (the converter's text
encoder, the discriminator) are left out."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from ovjax.checkpoint import official
from ovjax.checkpoint.store import save_imported
from ovjax.checkpoint.torch_save import save_state_dict
from ovjax.config import BaseTTSConfig
from ovjax.errors import CheckpointError, OvjaxError
from ovjax.fileio import atomic_output
from ovjax.training.checkpoints import RunCheckpoints
from ovjax.training.config import experiment_from_json
from ovjax.training.evaluate import inference_params
from ovjax.training.step import Optim
from ovjax.training.trainer import abstract_state, recipe_of

FORMATS = ("official", "orbax")


def trained_model(workdir, step: int | None = None):
  """(model config, inference parameters as NumPy, step) of a run's checkpoint (the newest
  unless `step`)."""
  workdir = Path(workdir)
  if not (workdir / "config.json").is_file():
    raise OvjaxError(f"{workdir}: not a training workdir (no config.json)")
  exp = experiment_from_json(json.loads((workdir / "config.json").read_text()))
  recipe = recipe_of(exp)
  checkpoints = RunCheckpoints(workdir / "checkpoints", every=1, keep=1_000_000)
  try:
    if checkpoints.latest_step is None:
      raise OvjaxError(f"{workdir}: no checkpoint yet")
    step = checkpoints.latest_step if step is None else step
    state, _ = checkpoints.restore(abstract_state(recipe, Optim(), exp.train.seed), step)
  finally:
    checkpoints.close()
  params = jax.tree.map(np.asarray, inference_params(recipe, state["params_g"]))
  config = recipe.model
  speakers = workdir / "speakers.json"
  if recipe.kind == "base" and speakers.is_file():
    names = json.loads(speakers.read_text())
    config = dataclasses.replace(config, speakers=tuple((n, i) for i, n in enumerate(names)))
  return config, params, step


def export(workdir, dst, fmt: str = "official", step: int | None = None,
           dtype: str = "float32") -> int:
  """Writes the inference folder `dst` (must not exist or be empty); returns the step exported.
  dtype="float16" halves an official-layout checkpoint (loaders compute in float32 again)."""
  if dtype not in ("float32", "float16"):
    raise OvjaxError(f"export dtype must be float32 or float16, got {dtype!r}")
  if fmt == "orbax" and dtype != "float32":
    raise OvjaxError("--dtype float16 is for the official layout (Orbax folders are float32)")
  if fmt not in FORMATS:
    raise OvjaxError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
  dst = Path(dst)
  if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
    raise CheckpointError(f"{dst}: destination exists and is not an empty folder")
  config, params, step = trained_model(workdir, step)
  if fmt == "orbax":
    save_imported(dst, config, params)
    return step
  table = official.BASE_TABLE if isinstance(config, BaseTTSConfig) else official.CONVERTER_TABLE
  state_dict = official.official_state_dict(params, table)
  if dtype == "float16":
    state_dict = {k: v.astype(np.float16) if v.dtype == np.float32 else v
                  for k, v in state_dict.items()}
  with atomic_output(dst, directory=True) as tmp:
    (tmp / "config.json").write_text(json.dumps(config.to_official(), indent=2))
    save_state_dict(tmp / "checkpoint.pth", state_dict, iteration=step)
  return step
