"""The jitted train step: VITS' order of updates, the non-finite guard, one compilation, and the
same step on 8 (fake) devices, replicated or FSDP-sharded, as on one."""
import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import reference_path
from ovjax.audio.io import load_audio
from ovjax.training import forward, objective
from ovjax.training.config import load_experiment
from ovjax.training.step import Optim, init_state, model_inputs, train_step
from ovjax.training.trainer import initial_params, recipe_of

FRAMES = 96


class Sgd(Optim):
  """Plain SGD: Adam's first steps are +-lr wherever a gradient is ~0, so they magnify float
  noise; with SGD, updated parameters compare like the gradients they came from."""

  def transform(self):
    return optax.sgd(self.learning_rate)


def tiny_batch(n: int = 2, frames: int = FRAMES, seed: int = 0) -> dict:
  """Real speech (pieces of the shared recordings) with made-up token ids."""
  audio = load_audio(reference_path("audio", "demo_speaker1.mp3"), 22050)
  rng = np.random.default_rng(seed)
  width = frames * 256 + 256
  batch = {"audio": np.zeros((n, width), np.float32), "audio_lengths": np.zeros(n, np.int32),
           "ids": np.zeros((n, 24), np.int32), "id_lengths": np.zeros(n, np.int32),
           "speaker_id": np.arange(n, dtype=np.int32) % 2}
  for i in range(n):
    length = int(rng.integers(frames // 2, frames)) * 256
    start = int(rng.integers(0, len(audio) - length))
    batch["audio"][i, :length] = audio[start:start + length]
    batch["audio_lengths"][i] = length
    tokens = int(rng.integers(8, 24))
    batch["ids"][i, :tokens] = rng.integers(1, 60, tokens)
    batch["id_lengths"][i] = tokens
  return batch


@pytest.fixture(scope="module")
def setup():
  exp = load_experiment("converter_tiny")
  recipe = recipe_of(exp)
  params_g, params_d = initial_params(exp, recipe)
  optim = Sgd(learning_rate=1e-2, steps_per_epoch=4)
  # As the trainer places it (host arrays would key a second compiled program).
  state = jax.device_put(init_state(params_g, params_d, optim, seed=3))
  return recipe, optim, state


@pytest.fixture(scope="module")
def step_fn(setup):
  recipe, optim, _ = setup
  return jax.jit(functools.partial(train_step, recipe=recipe, optim=optim))


def test_discriminator_first_then_generator_against_the_updated_discriminator(setup, step_fn):
  recipe, optim, state = setup
  batch = tiny_batch()
  new, metrics = step_fn(state, batch)

  # The same step written out plainly, with the step's own draws.
  key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
  k_draw, k_dropout = jax.random.split(key)
  inputs = model_inputs(recipe, batch)
  draws = forward.draw(k_draw, 2, inputs["spec"].shape[1], recipe.vits.inter_channels)
  tx = optim.transform()

  @jax.jit
  def plain(state):
    out = objective.generator_forward(recipe, state["params_g"], inputs, draws, k_dropout)
    y = objective.real_segment(recipe, inputs, out["ids_slice"])
    grads_d = jax.grad(lambda p: objective.discriminator_loss(recipe, p, y, out["y_hat"])[0])(
        state["params_d"])
    upd, _ = tx.update(grads_d, state["opt_d"], state["params_d"])
    params_d = optax.apply_updates(state["params_d"], upd)
    loss = lambda p: objective.generator_loss(
        recipe, objective.generator_forward(recipe, p, inputs, draws, k_dropout), inputs,
        params_d)[0]
    grads_g = jax.grad(loss)(state["params_g"])
    upd, _ = tx.update(grads_g, state["opt_g"], state["params_g"])
    return optax.apply_updates(state["params_g"], upd), params_d, optax.tree.norm(grads_g)

  params_g, params_d, norm_g = plain(state)
  close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                                                  atol=1e-6)
  jax.tree.map(close, new["params_d"], params_d)
  jax.tree.map(close, new["params_g"], params_g)
  close(metrics["grad_norm_g"], norm_g)
  assert int(new["step"]) == 1 and bool(metrics["finite"])


def test_a_non_finite_step_changes_nothing(setup, step_fn):
  recipe, optim, state = setup
  batch = tiny_batch()
  batch["audio"][0, 100] = np.nan
  new, metrics = step_fn(state, batch)
  assert not bool(metrics["finite"])
  same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                      {k: new[k] for k in ("params_g", "params_d", "opt_g", "opt_d")},
                      {k: state[k] for k in ("params_g", "params_d", "opt_g", "opt_d")})
  assert all(jax.tree.leaves(same))


def test_steps_compile_once(setup, step_fn):
  _, _, state = setup
  before = step_fn._cache_size()
  for seed in range(3):  # Different lengths, same fixed shapes.
    state, _ = step_fn(state, tiny_batch(seed=seed))
  assert step_fn._cache_size() == max(before, 1) == 1
  assert int(state["step"]) == 3


def test_bfloat16_compute_keeps_float32_parameters_and_losses(setup, step_fn):
  """train.compute_dtype=bfloat16: the networks compute in bfloat16, parameters
  and losses stay float32, and the step's losses are the float32 step's to bfloat16 accuracy."""
  _, optim, state = setup
  recipe = recipe_of(load_experiment("converter_tiny", ["train.compute_dtype=bfloat16"]))
  assert recipe.dtype == jnp.bfloat16
  batch = tiny_batch()
  new, metrics = jax.jit(functools.partial(train_step, recipe=recipe, optim=optim))(state, batch)
  _, reference = step_fn(state, batch)
  assert bool(metrics["finite"])
  for tree in ("params_g", "params_d"):  # (SGD keeps no optimiser state to check.)
    assert {x.dtype for x in jax.tree.leaves(new[tree]) if jnp.issubdtype(x.dtype, jnp.floating)
            } == {jnp.dtype(jnp.float32)}, tree
  names = ("loss_mel", "loss_kl", "loss_disc", "loss_g_total")
  assert all(metrics[name].dtype == jnp.float32 for name in names)
  # bfloat16 keeps ~3 significant digits; through the whole randomly initialised generator the
  # mel loss moved by 5.6% here, the others by less.
  rel = {name: abs(float(metrics[name]) / float(reference[name]) - 1) for name in names}
  assert max(rel.values()) < 0.1, rel


SHARDED = textwrap.dedent("""
  import functools, json, sys
  import jax, numpy as np
  sys.path.insert(0, {tests!r})
  from test_train_step import Sgd, run_two_steps
  from ovjax import sharding
  results = {{}}
  for name, fsdp in (("eight", False), ("fsdp", True)):
    state, metrics = run_two_steps(jax.devices(), fsdp)
    results[name] = {{"metrics": metrics, "kernel": kernel_of(state),
                      "sharded_leaves": sum(not x.sharding.is_fully_replicated
                                            for x in jax.tree.leaves(state["params_g"]))}}
  print(json.dumps(results))
""")


def kernel_of(state):
  return np.asarray(state["params_g"]["params"]["dec"]["conv_pre"]["kernel"]).ravel()[:64].tolist()


def run_two_steps(devices, fsdp: bool):
  """Two steps of the tiny converter on a batch of 8 over `devices` (data axis)."""
  from ovjax import sharding
  exp = load_experiment("converter_tiny")
  recipe = recipe_of(exp)
  params_g, params_d = initial_params(exp, recipe)
  optim = Sgd(learning_rate=1e-2, steps_per_epoch=4)
  mesh = sharding.data_mesh(devices)
  state = init_state(params_g, params_d, optim, seed=3)
  shard = sharding.state_shardings(state, mesh, fsdp)
  state = jax.device_put(state, shard)
  step = jax.jit(functools.partial(train_step, recipe=recipe, optim=optim),
                 in_shardings=(shard, sharding.batch_sharded(mesh)),
                 out_shardings=(shard, sharding.replicated(mesh)), donate_argnums=0)
  batch = tiny_batch(n=8)
  for _ in range(2):
    state, metrics = step(state, jax.device_put(batch, sharding.batch_sharded(mesh)))
  return state, {k: float(v) for k, v in metrics.items()}


def test_eight_devices_equal_one_device():
  """Two steps on 8 fake CPU devices (batch split over the data axis; parameters replicated,
  then FSDP-sharded by the rule table) give the one-device losses, norms and parameters."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  code = SHARDED.format(tests=os.path.dirname(__file__)).replace(
      "from test_train_step import Sgd, run_two_steps",
      "from test_train_step import Sgd, kernel_of, run_two_steps")
  proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  state, one = run_two_steps(jax.devices()[:1], False)  # Meanwhile, here, on one device.
  one_kernel = kernel_of(state)
  out, err = proc.communicate(timeout=900)
  assert proc.returncode == 0, err[-3000:]
  results = json.loads(out.strip().splitlines()[-1])
  assert results["eight"]["sharded_leaves"] == 0
  assert results["fsdp"]["sharded_leaves"] > 20  # FSDP really split the kernels.
  for name in ("eight", "fsdp"):
    for key, value in one.items():
      assert value == pytest.approx(results[name]["metrics"][key], rel=1e-4, abs=1e-6), (name, key)
    np.testing.assert_allclose(results[name]["kernel"], one_kernel, rtol=1e-4, atol=1e-6)
