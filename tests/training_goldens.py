"""Reads a folder of reference training-step goldens (the layout of
../shared/reference/training_step) into ovjax's structures, for the parity tests.

The folder comes from $OVJAX_TRAINING_GOLDENS (default: ../shared/reference/training_step beside
the clone), so the same tests run on any goldens of that layout. A step folder holds config.json,
state_dict.npz (+ text_encoder.npz for a converter) and golden.npz; discriminator.npz is shared.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from conftest import reference_path
from ovjax.checkpoint import official
from ovjax.config import base_tts_config_from_official, converter_config_from_official
from ovjax.models import base_tts, converter
from ovjax.training import forward, objective


def goldens_dir() -> Path:
  path = os.environ.get("OVJAX_TRAINING_GOLDENS")
  if path:
    path = Path(path)
    if not path.is_dir():
      raise FileNotFoundError(f"OVJAX_TRAINING_GOLDENS={path}: no such folder")
    return path
  return reference_path("training_step")


def step_names() -> list[str]:
  names = sorted(p.name for p in goldens_dir().iterdir() if (p / "golden.npz").is_file())
  if not names:
    raise FileNotFoundError(f"{goldens_dir()}: no step folders (*/golden.npz)")
  return names


def channels_last(a):
  """The reference's [B, C, T] -> ours [B, T, C]."""
  return np.swapaxes(np.asarray(a), 1, 2)


def table_for(kind: str, which: str = "g"):
  if which == "d":
    return official.DISCRIMINATOR_TABLE
  return official.BASE_TABLE if kind == "base" else official.CONVERTER_TRAIN_TABLE


class Step:
  """One recorded step: recipe, parameters (ours), batch, draws and the golden arrays."""

  def __init__(self, name: str):
    root = goldens_dir()
    folder = root / name
    cfg = json.loads((folder / "config.json").read_text())
    self.golden = dict(np.load(folder / "golden.npz"))
    g = self.golden
    state = dict(np.load(folder / "state_dict.npz"))
    self.kind = "base" if cfg["data"].get("n_speakers", 0) else "converter"
    if self.kind == "base":
      config = base_tts_config_from_official(cfg)
      shapes = official.expected_shapes(base_tts.param_shapes(config))
    else:
      config = converter_config_from_official(cfg)
      state.update({f"text_enc.{k}": v for k, v in np.load(folder / "text_encoder.npz").items()})
      shapes = official.expected_shapes(converter.train_param_shapes(config))
    disc = dict(np.load(root / "discriminator.npz"))
    width = disc["discriminators.0.convs.0.weight_v"].shape[0] / 16
    hop = (config.vits if self.kind == "base" else config).hop_length
    self.recipe = objective.Recipe(self.kind, config, discriminator_width=width,
                                   segment_frames=g["y_hat"].shape[-1] // hop)
    self.params_g = official.map_state_dict(state, table_for(self.kind), shapes)
    d_shapes = official.expected_shapes(jax.eval_shape(
        lambda k: self.recipe.discriminator().init(k, jnp.zeros((1, self.recipe.segment_samples))),
        jax.random.key(0)))
    self.params_d = official.map_state_dict(disc, official.DISCRIMINATOR_TABLE, d_shapes)
    self.batch = dict(ids=jnp.asarray(g["x"], jnp.int32),
                      id_lengths=jnp.asarray(g["x_lengths"], jnp.int32),
                      spec=jnp.asarray(channels_last(g["spec"])),
                      spec_lengths=jnp.asarray(g["spec_lengths"], jnp.int32),
                      audio=jnp.asarray(g["wav"][:, 0]))
    if "sid" in g:
      self.batch["sid"] = jnp.asarray(g["sid"], jnp.int32)
    self.draws = forward.Draws(
        jnp.asarray(channels_last(g["draw_eps_posterior"])), jnp.asarray(g["draw_u_slice"]),
        jnp.asarray(channels_last(g["draw_eps_sdp"])) if "draw_eps_sdp" in g else None)

  def grad_keys(self):
    return [k for k in self.golden if k.startswith(("grad_g/", "grad_d/"))]
