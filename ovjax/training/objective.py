"""What one training step computes: the generator's forward pass and the losses of both players.

`Recipe` is the static description (model kind and config, discriminator width, segment, loss
weights, compute dtype); the functions are pure and take every random draw explicitly, so they
serve the jitted train step and the parity tests against the reference's recorded step alike.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ovjax.audio.mel import config_filterbank, log_mel, spec_to_log_mel
from ovjax.config import BaseTTSConfig, ConverterConfig
from ovjax.layers.discriminator import MultiPeriodDiscriminator
from ovjax.models.base_tts import BaseSpeakerTTSModel
from ovjax.models.converter import ToneColorConverterTrainModel
from ovjax.training import forward, losses

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Recipe:
  """kind: "base" (the VITS base speaker TTS) or "converter" (the tone-colour converter)."""
  kind: str
  model: BaseTTSConfig | ConverterConfig
  discriminator_width: float = 1.0
  segment_frames: int = 32  # VITS' 8192-sample segment at hop 256.
  c_mel: float = 45.0
  c_kl: float = 1.0
  compute_dtype: str = "float32"  # Parameters stay float32; "bfloat16" computes the networks in it.

  def __post_init__(self):
    want = BaseTTSConfig if self.kind == "base" else ConverterConfig
    if self.kind not in ("base", "converter") or not isinstance(self.model, want):
      raise ValueError(f"recipe: kind {self.kind!r} does not match a {type(self.model).__name__}")
    if self.compute_dtype not in DTYPES:
      raise ValueError(f"recipe: compute_dtype must be one of {sorted(DTYPES)}")

  @property
  def vits(self) -> ConverterConfig:
    return self.model.vits if self.kind == "base" else self.model

  @property
  def dtype(self):
    return DTYPES[self.compute_dtype]

  def generator(self):
    return (BaseSpeakerTTSModel if self.kind == "base" else ToneColorConverterTrainModel)(self.model)

  def discriminator(self):
    return MultiPeriodDiscriminator(self.discriminator_width)

  @property
  def segment_samples(self) -> int:
    return self.segment_frames * self.vits.hop_length


def generator_forward(recipe: Recipe, params_g, batch, draws: forward.Draws, dropout_key=None):
  """The generator's outputs (see `ovjax.training.forward`); dropout on when a key is given.
  The spectrogram enters in the compute dtype; the outputs the losses read are float32."""
  fn = forward.base_tts_forward if recipe.kind == "base" else forward.converter_forward
  batch = dict(batch, spec=batch["spec"].astype(recipe.dtype))
  rngs = None if dropout_key is None else {"dropout": dropout_key}
  out = recipe.generator().apply(params_g, batch, draws, recipe.segment_frames,
                                 deterministic=dropout_key is None, method=fn, rngs=rngs)
  return {k: (v.astype(jnp.float32) if jnp.issubdtype(v.dtype, jnp.floating) else v)
          for k, v in out.items()}


def real_segment(recipe: Recipe, batch, ids_slice):
  """The waveform segment the decoded one is compared with: [B, segment * hop]."""
  hop = recipe.vits.hop_length
  return forward.slice_segments(batch["audio"], ids_slice * hop, recipe.segment_samples)


def _discriminate(recipe: Recipe, params_d, real, fake):
  """D on real and fake in one pass (stacked on the batch axis); returns each half."""
  scores, fmaps = recipe.discriminator().apply(
      params_d, jnp.concatenate([real, fake]).astype(recipe.dtype))
  half = real.shape[0]
  split = lambda xs: ([x[:half] for x in xs], [x[half:] for x in xs])
  return split(scores), [split(f) for f in fmaps]


def discriminator_loss(recipe: Recipe, params_d, real, fake) -> tuple[jax.Array, dict[str, Any]]:
  """Least squares on D(y) and D(y_hat), y_hat a constant here."""
  (real_scores, fake_scores), _ = _discriminate(recipe, params_d, real,
                                                jax.lax.stop_gradient(fake))
  loss = losses.discriminator_loss(real_scores, fake_scores)
  return loss, {"loss_disc": loss}


def segment_mels(recipe: Recipe, out, batch):
  """(y, y_mel, y_hat_mel): the real segment, and the log-mels of the mel loss. As in VITS'
  train.py, y_mel is the whole linear spectrogram's mel, sliced (not recomputed from y)."""
  y = real_segment(recipe, batch, out["ids_slice"])
  spec = jax.lax.stop_gradient(batch["spec"].astype(jnp.float32))
  y_mel = forward.slice_segments(spec_to_log_mel(spec, config_filterbank(recipe.vits)),
                                 out["ids_slice"], recipe.segment_frames)
  y_hat = out["y_hat"]
  lengths = jnp.full((y_hat.shape[0],), y_hat.shape[1], jnp.int32)
  return y, y_mel, log_mel(y_hat, lengths, recipe.vits)


def generator_loss(recipe: Recipe, out, batch, params_d) -> tuple[jax.Array, dict[str, Any]]:
  """loss_g_total = loss_gen + loss_fm + c_mel * mel L1 + c_kl * KL (+ both duration losses)."""
  y, y_mel, y_hat_mel = segment_mels(recipe, out, batch)
  (_, fake_scores), fmaps = _discriminate(recipe, params_d, y, out["y_hat"])
  terms = {
      "loss_gen": losses.generator_loss(fake_scores),
      "loss_fm": losses.feature_loss([f[0] for f in fmaps], [f[1] for f in fmaps]),
      "loss_mel": recipe.c_mel * losses.mel_loss(y_mel, y_hat_mel),
      "loss_kl": recipe.c_kl * losses.kl_loss(out["z_p"], out["logs_q"], out["m_p_expanded"],
                                              out["logs_p_expanded"], out["y_mask"]),
  }
  if recipe.kind == "base":
    l_dp = losses.duration_loss(out["logw"], out["w"], out["x_mask"])
    terms["loss_dur"] = jnp.sum(out["l_length_sdp"]) + jnp.sum(l_dp)
  total = sum(terms.values())
  return total, dict(terms, loss_g_total=total)
