"""The training loop: `train_and_evaluate(experiment, workdir)`, readable top to bottom.

A workdir holds everything a run needs to resume: config.json (the experiment), data/ (the TFDS
dataset, unless data.data_dir points elsewhere), checkpoints/ (Orbax: train state + data
iterator), metrics.jsonl, tensorboard/, samples/. Running the same command again resumes from
the newest checkpoint and continues exactly as an uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ovjax import sharding
from ovjax.checkpoint import official
from ovjax.checkpoint.store import load_checkpoint
from ovjax.checkpoint.torch_pickle import load_state_dict
from ovjax.errors import OvjaxError
from ovjax.layers.init import fast_init
from ovjax.models import base_tts, converter
from ovjax.training import evaluate, objective
from ovjax.training.checkpoints import RunCheckpoints
from ovjax.training.config import Experiment, experiment_from_json
from ovjax.training.metrics import JsonLines, TensorBoard
from ovjax.training.step import Optim, init_state, train_step

_LOG = logging.getLogger(__name__)
# Fields a resumed run may change (how long and how often); everything else must match.
_RESUMABLE_CHANGES = {"steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"}
BATCH_KEYS = ("ids", "id_lengths", "audio", "audio_lengths", "speaker_id")


def recipe_of(exp: Experiment) -> objective.Recipe:
  t = exp.train
  return objective.Recipe(exp.kind, exp.model_config(), discriminator_width=t.discriminator_width,
                          segment_frames=t.segment_frames, c_mel=t.c_mel, c_kl=t.c_kl,
                          compute_dtype=t.compute_dtype)


# -- the workdir --------------------------------------------------------------------------------

def _check_workdir(exp: Experiment, workdir: Path) -> None:
  """Writes config.json, or checks that a resumed run is the same experiment."""
  path = workdir / "config.json"
  if path.exists():
    old = experiment_from_json(json.loads(path.read_text()))
    same = lambda a, b: {k: v for k, v in dataclasses.asdict(a).items()
                         if k not in _RESUMABLE_CHANGES} == \
        {k: v for k, v in dataclasses.asdict(b).items() if k not in _RESUMABLE_CHANGES}
    if old.kind != exp.kind or old.model != exp.model or old.data != exp.data or \
        not same(old.train, exp.train):
      raise OvjaxError(f"{workdir} holds a different experiment (config.json); use a new "
                       "--workdir, or the same config to resume")
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(exp.to_json(), indent=1, sort_keys=True))


# -- data ---------------------------------------------------------------------------------------

def open_data(exp: Experiment, recipe: objective.Recipe, workdir: Path):
  """Builds (process 0; the others wait) or reuses the TFDS dataset; returns it."""
  from ovjax.data.builders import build_dataset, open_dataset
  from ovjax.data.preprocess import AudioSpec, TextSpec
  vits, d = recipe.vits, exp.data
  if recipe.kind == "converter":
    text = TextSpec("espeak", tuple(vits.text_symbols), vits.add_blank)
  else:
    text = TextSpec(recipe.model.frontend, tuple(recipe.model.symbols), vits.add_blank)
  audio = AudioSpec(vits.sampling_rate, vits.hop_length, d.min_seconds, d.max_seconds,
                    min_frames=recipe.segment_frames)
  data_dir = Path(d.data_dir) if d.data_dir else workdir / "data"
  if jax.process_index() == 0:
    report = build_dataset(d.layout, d.source or None, data_dir, text, audio,
                           validation_items=d.validation_items, seed=exp.train.seed,
                           language=d.language, beam=d.beam)
    _LOG.info("dataset %s: %s records, dropped %s", report.path, report.records, report.dropped)
  _sync("dataset")
  dataset = open_dataset(data_dir, d.layout, text, audio)
  if recipe.kind == "base" and len(dataset.speakers) > recipe.model.n_speakers:
    raise OvjaxError(f"the corpus has {len(dataset.speakers)} speakers, the model config "
                     f"n_speakers = {recipe.model.n_speakers}")
  return dataset


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


# -- parameters ---------------------------------------------------------------------------------

def initial_params(exp: Experiment, recipe: objective.Recipe):
  """(generator, discriminator) parameters in the training layout (NumPy): fresh from the seed,
  or warm-started from an official/imported model folder and a VITS-layout D_*.pth."""
  key_g, key_d = jax.random.split(jax.random.key(exp.train.seed))
  if recipe.kind == "converter":
    params_g = converter.init_train_params(recipe.model, key_g)
  else:
    params_g = base_tts.init_params(recipe.model, key_g)
  segment = jnp.zeros((1, recipe.segment_samples))
  params_d = fast_init(lambda k: recipe.discriminator().init(k, segment), key_d)
  if exp.train.init_from:
    params_g = _warm_start(params_g, exp.train.init_from, recipe)
  if exp.train.discriminator_from:
    path = exp.train.discriminator_from
    shapes = {k: v.shape for k, v in official._flatten(params_d["params"]).items()}
    params_d = official.map_state_dict(load_state_dict(path), official.DISCRIMINATOR_TABLE,
                                       shapes, source=str(path))
  return params_g, params_d


def _warm_start(params_g, folder, recipe: objective.Recipe):
  """The folder's weights over the fresh tree (the converter's text encoder stays fresh: official
  converters ship without it)."""
  loaded = load_checkpoint(folder, "converter" if recipe.kind == "converter" else "base_tts")[1]
  fresh = official._flatten(params_g["params"])
  for path, value in official._flatten(loaded["params"]).items():
    if path not in fresh or fresh[path].shape != value.shape:
      raise OvjaxError(f"train.init_from {folder}: {path} does not fit the experiment's model "
                       f"config ({value.shape} vs "
                       f"{getattr(fresh.get(path), 'shape', 'absent')})")
    fresh[path] = value
  return {"params": official._unflatten(fresh)}


def check_training_layout(params, expected, what: str) -> None:
  """Training needs weight norm as (weight_v, weight_g); a folded (inference) tree has plain
  kernels in their place and would silently train a different parameterisation."""
  got = set(official._flatten(params["params"]))
  want = set(official._flatten(expected["params"]))
  if got != want:
    folded = any(p.endswith("/kernel") and p[:-len("kernel")] + "weight_v" in want for p in got)
    hint = (" (weight norm is folded: this is an inference tree; load the checkpoint with "
            "load_checkpoint, which keeps weight_v/weight_g)") if folded else ""
    raise OvjaxError(f"{what}: parameters do not match the training layout{hint}: e.g. "
                     f"{sorted(got ^ want)[0]}")


# -- the loop -----------------------------------------------------------------------------------

def abstract_state(recipe: objective.Recipe, optim: Optim, seed: int):
  """The train state's shapes and dtypes, computed without allocating it."""
  shapes_g = (converter.train_param_shapes if recipe.kind == "converter"
              else base_tts.param_shapes)(recipe.model)
  segment = jnp.zeros((1, recipe.segment_samples))
  shapes_d = jax.eval_shape(lambda k: recipe.discriminator().init(k, segment), jax.random.key(0))
  return jax.eval_shape(lambda g, d: init_state(g, d, optim, seed), shapes_g, shapes_d)


def memory_per_device() -> int | None:
  """Bytes one device can hold: the accelerator's own limit, or the host's RAM on CPU."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // jax.local_device_count()
  except (ValueError, OSError):
    return None


def check_state_fits(abstract, n_devices: int, fsdp: bool, limit: int | None) -> int:
  """Bytes of train state per device; refuses (one line) a config whose parameters and optimiser
  states alone would not fit, before anything is allocated."""
  total = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(abstract))
  per_device = total // n_devices if fsdp else total
  if limit is not None and per_device > limit:
    params = sum(a.size for a in jax.tree.leaves(abstract["params_g"]))
    raise OvjaxError(f"the model is too big for this machine: {params / 1e6:.0f} M generator "
                     f"parameters make {per_device / 2**30:.1f} GiB of train state per device "
                     f"(parameters and optimiser moments), over the {limit / 2**30:.1f} GiB a "
                     "device has" + ("" if fsdp else "; train.fsdp=True would split it"))
  return per_device


class _Preemption:
  """SIGTERM (a preempted VM, `kill`) asks the loop to save and stop after the current step."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def _global_batch(batch, mesh):
  """The process's rows -> global arrays split over the data axis."""
  spec = sharding.batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(spec, np.asarray(batch[k]))
          for k in BATCH_KEYS}


def _replicated(tree, mesh):
  return jax.jit(lambda x: x, out_shardings=sharding.replicated(mesh))(tree)


def _final_save(checkpoints: RunCheckpoints, step: int, state, loader) -> None:
  checkpoints.wait()  # A save of this very step may be in flight.
  if checkpoints.latest_step != step:
    checkpoints.save(step, state, loader.get_state(), force=True)
  checkpoints.wait()


def train_and_evaluate(exp: Experiment, workdir, progress: bool = True) -> dict:
  """Trains `exp` in `workdir` up to exp.train.steps (resuming if the workdir has checkpoints).
  Returns the last logged metrics."""
  from ovjax.data.loader import TrainLoader, eval_batch
  from ovjax.data.sampler import BucketPlan
  workdir = Path(workdir).absolute()
  t = exp.train
  if t.disable_most_optimizations:
    jax.config.update("jax_disable_most_optimizations", True)
  recipe = recipe_of(exp)
  _check_workdir(exp, workdir)
  main_process = jax.process_index() == 0

  # Data: a length-bucketed plan over the training split; each process reads its own rows.
  dataset = open_data(exp, recipe, workdir)
  if main_process:  # The export of a base TTS names its speakers (styles) by these.
    (workdir / "speakers.json").write_text(json.dumps(dataset.speakers, indent=1))
  plan = BucketPlan(dataset.frames(), dataset.tokens(), exp.data.batch_size,
                    exp.data.frame_buckets, t.seed)
  mesh = sharding.global_mesh()
  if exp.data.batch_size % mesh.devices.size:
    raise OvjaxError(f"data.batch_size {exp.data.batch_size} must be a multiple of the device "
                     f"count ({mesh.devices.size})")
  loader = TrainLoader(dataset.source("train"), plan, recipe.vits.hop_length,
                       num_threads=exp.data.num_threads)

  # State: parameters, optimisers, step and seed, placed by the sharding rules.
  optim = Optim(t.learning_rate, t.betas[0], t.betas[1], t.eps, t.weight_decay, t.lr_decay,
                plan.steps_per_epoch)
  checkpoints = RunCheckpoints(workdir / "checkpoints", t.checkpoint_every, t.keep_checkpoints)
  resume = checkpoints.latest_step is not None
  abstract = abstract_state(recipe, optim, t.seed)
  check_state_fits(abstract, mesh.devices.size, t.fsdp, memory_per_device())
  if not resume:  # A resumed run skips initialisation: the checkpoint has it all.
    params_g, params_d = initial_params(exp, recipe)
    check_training_layout(params_g, abstract["params_g"], "generator")
  state_sharding = sharding.state_shardings(abstract, mesh, t.fsdp)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, state_sharding)
  if resume:
    state, data_state = checkpoints.restore(abstract)
    loader.set_state(data_state)
  else:
    state = jax.jit(functools.partial(init_state, optim=optim, seed=t.seed),
                    out_shardings=state_sharding)(params_g, params_d)
    del params_g, params_d
  step = int(jax.device_get(state["step"]))

  step_fn = jax.jit(functools.partial(train_step, recipe=recipe, optim=optim),
                    in_shardings=(state_sharding, sharding.batch_sharded(mesh)),
                    out_shardings=(state_sharding, sharding.replicated(mesh)),
                    donate_argnums=0)

  # Evaluation: the same held-out items every time.
  eval_source = dataset.source("validation") if dataset.splits.get("validation") else None
  if eval_source is not None:
    n_eval = min(len(eval_source), 4)
    eval_items = eval_batch(eval_source, list(range(n_eval)), recipe.vits.hop_length)
    eval_keys = [k.decode() if isinstance(k, bytes) else str(k)
                 for k in dataset.keys("validation")[:n_eval]]
    eval_speakers = [dataset.speakers[int(s)] for s in eval_items["speaker_id"]]

  metrics_log = JsonLines(workdir / "metrics.jsonl") if main_process else None
  board = TensorBoard(workdir / "tensorboard") if main_process else None
  bar = None
  if progress and main_process:
    from tqdm import tqdm
    bar = tqdm(total=t.steps, initial=step, unit="step", dynamic_ncols=True,
               desc="training", file=sys.stderr)
  preemption = _Preemption()
  rate = recipe.vits.sampling_rate
  window, window_start, audio_seconds, last = [], time.perf_counter(), 0.0, {}
  try:
    batches = iter(loader)
    while step < t.steps:
      batch = next(batches)
      state, metrics = step_fn(state, _global_batch(batch, mesh))
      metrics = jax.device_get(metrics)
      if not bool(metrics["finite"]):
        bad = {k: float(v) for k, v in metrics.items()
               if k.startswith("loss") and not math.isfinite(float(v))}
        checkpoints.wait()
        raise OvjaxError(f"step {step + 1}: non-finite loss ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                         f"stopped, the last good checkpoint (step {checkpoints.latest_step}) is kept")
      step += 1
      audio_seconds += float(np.sum(batch["audio_lengths"])) * jax.process_count() / rate
      window.append({k: float(v) for k, v in metrics.items() if k != "finite"})
      checkpoints.save(step, state, loader.get_state())  # When due (every checkpoint_every).

      if step % t.log_every == 0 or step == t.steps:
        elapsed = time.perf_counter() - window_start
        last = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        last.update(step=step, epoch=step // plan.steps_per_epoch,
                    steps_per_s=len(window) / elapsed, audio_s_per_s=audio_seconds / elapsed)
        if main_process:
          metrics_log.write(last)
          board.scalars(step, last)
        window, window_start, audio_seconds = [], time.perf_counter(), 0.0
        if bar is not None:
          bar.set_postfix(loss_g=f"{last['loss_g_total']:.2f}", mel=f"{last['loss_mel']:.2f}",
                          audio_s_per_s=f"{last['audio_s_per_s']:.1f}")
      if bar is not None:
        bar.update(1)
      if eval_source is not None and (step % t.eval_every == 0 or step == t.steps):
        params_g = jax.device_get(_replicated(state["params_g"], mesh))  # Every process joins.
        if main_process:
          ev = evaluate.evaluate(recipe, params_g, eval_items, eval_keys, eval_speakers, step,
                                 workdir)
          metrics_log.write(dict(ev, step=step))
          board.scalars(step, ev)
      if preemption.requested:
        _final_save(checkpoints, step, state, loader)
        _LOG.warning("preempted (SIGTERM) at step %d: saved, stopping", step)
        break
    else:
      _final_save(checkpoints, step, state, loader)
  finally:
    preemption.restore()
    checkpoints.close()
    if bar is not None:
      bar.close()
    for writer in (metrics_log, board):
      if writer is not None:
        writer.close()
  return last
