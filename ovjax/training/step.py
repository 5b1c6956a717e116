"""The train step: one discriminator update and one generator update, as VITS' train.py orders
them, as a pure function over a plain dict state.

    state = {"step", "rng", "params_g", "params_d", "opt_g", "opt_d"}

The generator runs forward once (`jax.vjp`); the discriminator steps on its detached output; the
generator's losses are then taken against the *updated* discriminator and pulled back through the
same forward pass. A step whose losses are not finite leaves the state as it was and says so in
its metrics (`finite`), so the trainer can stop without a poisoned state. The trainer jits this
function with explicit shardings and a donated state.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ovjax.audio.spectrogram import linear_spectrogram
from ovjax.training import forward, objective


@dataclasses.dataclass(frozen=True)
class Optim:
  """AdamW with exponential decay per epoch (VITS: lr 2e-4, betas 0.8/0.99, eps 1e-9, weight
  decay 0.01, decay 0.999875); the generator and the discriminator each get their own."""
  learning_rate: float = 2e-4
  b1: float = 0.8
  b2: float = 0.99
  eps: float = 1e-9
  weight_decay: float = 0.01
  lr_decay: float = 0.999875
  steps_per_epoch: int = 1

  def schedule(self):
    return optax.exponential_decay(self.learning_rate, self.steps_per_epoch, self.lr_decay,
                                   staircase=True)

  def transform(self) -> optax.GradientTransformation:
    return optax.adamw(self.schedule(), b1=self.b1, b2=self.b2, eps=self.eps,
                       weight_decay=self.weight_decay)


def init_state(params_g, params_d, optim: Optim, seed: int, step: int = 0) -> dict:
  tx = optim.transform()
  return {"step": jnp.asarray(step, jnp.int32),
          "rng": jax.random.key_data(jax.random.key(seed)),
          "params_g": params_g, "params_d": params_d,
          "opt_g": tx.init(params_g), "opt_d": tx.init(params_d)}


def model_inputs(recipe: objective.Recipe, batch) -> dict:
  """A loader batch (ids, id_lengths, audio, audio_lengths, speaker_id) -> the forward pass's
  inputs, the linear spectrogram computed on device."""
  vits = recipe.vits
  frames = (batch["audio"].shape[1] - vits.hop_length) // vits.hop_length
  spec, spec_lengths = linear_spectrogram(batch["audio"], batch["audio_lengths"],
                                          vits.filter_length, vits.hop_length, vits.win_length,
                                          frames=frames)
  inputs = {"ids": batch["ids"], "id_lengths": batch["id_lengths"], "spec": spec,
            "spec_lengths": spec_lengths, "audio": batch["audio"]}
  if recipe.kind == "base":
    inputs["sid"] = batch["speaker_id"]
  return inputs


def _split_outputs(out):
  """Differentiable outputs and the rest (integer positions), for jax.vjp."""
  floats = {k: v for k, v in out.items() if jnp.issubdtype(v.dtype, jnp.floating)}
  return floats, {k: v for k, v in out.items() if k not in floats}


def train_step(state, batch, *, recipe: objective.Recipe, optim: Optim):
  """One step. Returns (new state, metrics: losses, gradient and parameter norms, lr, finite)."""
  tx = optim.transform()
  key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
  k_draw, k_dropout = jax.random.split(key)
  inputs = model_inputs(recipe, batch)
  b, frames = inputs["spec"].shape[:2]
  draws = forward.draw(k_draw, b, frames, recipe.vits.inter_channels,
                       inputs["ids"].shape[1] if recipe.kind == "base" else None)

  def generator(params_g):
    return _split_outputs(objective.generator_forward(recipe, params_g, inputs, draws, k_dropout))

  outs, pullback, aux = jax.vjp(generator, state["params_g"], has_aux=True)
  out = outs | aux
  y = objective.real_segment(recipe, inputs, out["ids_slice"])

  # Discriminator first, on the detached generator output.
  (loss_d, d_terms), grads_d = jax.value_and_grad(
      lambda p: objective.discriminator_loss(recipe, p, y, out["y_hat"]), has_aux=True)(
          state["params_d"])
  updates_d, opt_d = tx.update(grads_d, state["opt_d"], state["params_d"])
  params_d = optax.apply_updates(state["params_d"], updates_d)

  # Generator against the updated discriminator, through the one forward pass.
  (loss_g, g_terms), d_outs = jax.value_and_grad(
      lambda o: objective.generator_loss(recipe, o | aux, inputs, params_d), has_aux=True)(outs)
  (grads_g,) = pullback(d_outs)
  updates_g, opt_g = tx.update(grads_g, state["opt_g"], state["params_g"])
  params_g = optax.apply_updates(state["params_g"], updates_g)

  finite = jnp.isfinite(loss_g) & jnp.isfinite(loss_d)
  new = {"step": state["step"] + 1, "rng": state["rng"], "params_g": params_g,
         "params_d": params_d, "opt_g": opt_g, "opt_d": opt_d}
  keep = lambda n, o: jnp.where(finite, n, o)
  new = dict(jax.tree.map(keep, {k: new[k] for k in ("params_g", "params_d", "opt_g", "opt_d")},
                          {k: state[k] for k in ("params_g", "params_d", "opt_g", "opt_d")}),
             step=new["step"], rng=new["rng"])
  metrics = dict(g_terms, **d_terms, loss_d_total=loss_d, finite=finite,
                 grad_norm_g=optax.tree.norm(grads_g), grad_norm_d=optax.tree.norm(grads_d),
                 param_norm_g=optax.tree.norm(params_g),
                 learning_rate=optim.schedule()(state["step"]))
  return new, metrics
