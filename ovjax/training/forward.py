"""The generator's training forward pass of both models, up to the decoded segment.

Base TTS (VITS' `SynthesizerTrn.forward`): text prior, posterior + flow, MAS, both duration
losses, prior expansion, decoder on a random segment. Converter (MeloTTS' recipe with use_vc):
tone colour from the reference encoder on the item's own spectrogram, an IPA text encoder for the
prior, no duration model; v2 (zero_g) gives the posterior encoder a zero embedding and decodes
unconditioned, the flow still conditioned.

Each pass is a function of the bound model (`Model.apply(..., method=fn)`) with every random draw
passed in (`Draws`), so the reference's recorded draws can be injected and a training step can
draw them from a key.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ovjax.layers.masks import sequence_mask
from ovjax.training.alignment import log_likelihood_value, maximum_path


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Draws:
  """The step's randomness: posterior noise [B, T, inter], the SDP's e_q [B, Tx, 2] (base TTS
  only), and the segment positions u ~ U[0, 1) [B]."""
  eps_posterior: jax.Array
  u_slice: jax.Array
  eps_sdp: jax.Array | None = None


def draw(key, batch: int, frames: int, channels: int, tokens: int | None = None) -> Draws:
  k_post, k_slice, k_sdp = jax.random.split(key, 3)
  return Draws(jax.random.normal(k_post, (batch, frames, channels)),
               jax.random.uniform(k_slice, (batch,)),
               None if tokens is None else jax.random.normal(k_sdp, (batch, tokens, 2)))


def slice_starts(u, lengths, segment: int):
  """floor(u * (length - segment + 1)), the reference's `rand_slice_segments` start (float32
  product, truncated); never negative."""
  span = (lengths - segment + 1).astype(jnp.float32)
  return jnp.maximum((u * span).astype(jnp.int32), 0)


def slice_segments(x, starts, size: int):
  """x [B, T, ...] -> [B, size, ...]: rows starts[b] ... starts[b] + size - 1 of each item."""
  return jax.vmap(lambda row, s: jax.lax.dynamic_slice_in_dim(row, s, size, axis=0))(x, starts)


def _align_and_expand(z_p, y_mask, m_p, logs_p, x_mask):
  """MAS path [B, Ty, Tx] of the frames' z_p under the tokens' prior, and that prior expanded to
  frames."""
  value = log_likelihood_value(jax.lax.stop_gradient(z_p), jax.lax.stop_gradient(m_p),
                               jax.lax.stop_gradient(logs_p))
  attn = maximum_path(value, y_mask * jnp.swapaxes(x_mask, 1, 2))
  m_p_expanded = jnp.einsum("btx,bxc->btc", attn, m_p, precision="highest")
  logs_p_expanded = jnp.einsum("btx,bxc->btc", attn, logs_p, precision="highest")
  return attn, m_p_expanded, logs_p_expanded


def _posterior_and_prior(model, batch, draws, g, g_flow, prior, deterministic):
  spec = batch["spec"]
  y_mask = sequence_mask(batch["spec_lengths"], spec.shape[1], spec.dtype)
  m_q, logs_q = model.posterior(spec, y_mask, g, deterministic)
  z = (m_q + draws.eps_posterior.astype(m_q.dtype) * jnp.exp(logs_q)) * y_mask
  z_p = model.flow_forward(z, y_mask, g_flow, deterministic)
  h, m_p, logs_p, x_mask = prior
  attn, m_p_expanded, logs_p_expanded = _align_and_expand(z_p, y_mask, m_p, logs_p, x_mask)
  return dict(enc_x=h, m_p=m_p, logs_p=logs_p, x_mask=x_mask, y_mask=y_mask, z=z, m_q=m_q,
              logs_q=logs_q, z_p=z_p, attn=attn, m_p_expanded=m_p_expanded,
              logs_p_expanded=logs_p_expanded)


def _decode_segment(model, out, batch, draws, g, segment: int):
  ids_slice = slice_starts(draws.u_slice, batch["spec_lengths"], segment)
  z_slice = slice_segments(out["z"], ids_slice, segment)
  ones = jnp.ones((*z_slice.shape[:2], 1), z_slice.dtype)
  y_hat = model.decode(z_slice, ones, g)
  return dict(out, ids_slice=ids_slice, z_slice=z_slice, y_hat=y_hat)


def base_tts_forward(model, batch, draws: Draws, segment: int, deterministic: bool = True):
  """batch: ids [B, Tx], id_lengths, spec [B, T, F], spec_lengths, sid [B]."""
  g = model.speaker(batch["sid"]).astype(batch["spec"].dtype)
  prior = model.enc_p(batch["ids"], batch["id_lengths"], deterministic)
  out = _posterior_and_prior(model, batch, draws, g, g, prior, deterministic)
  h, x_mask = out["enc_x"], out["x_mask"]
  w = jnp.sum(out["attn"], axis=1)[..., None]  # Frames per token [B, Tx, 1].
  tokens = jnp.sum(x_mask)
  out["w"] = w
  out["l_length_sdp"] = model.sdp(h, x_mask, w, g=g, noise=draws.eps_sdp,
                                  deterministic=deterministic) / tokens
  out["logw"] = model.dp(h, x_mask, g, deterministic)
  out["logw_"] = jnp.log(w + 1e-6) * x_mask
  return _decode_segment(model, out, batch, draws, g, segment)


def converter_forward(model, batch, draws: Draws, segment: int, deterministic: bool = True):
  """batch: ids [B, Tx] (IPA), id_lengths, spec [B, T, F], spec_lengths."""
  spec = batch["spec"]
  g = model.extract_se(spec, batch["spec_lengths"])[:, None, :].astype(spec.dtype)
  prior = model.text_enc(batch["ids"], batch["id_lengths"], deterministic)
  out = _posterior_and_prior(model, batch, draws, g, g, prior, deterministic)
  out["g"] = g
  # v2 (zero_g): the decoder runs unconditioned in training (the cond layer skipped).
  return _decode_segment(model, out, batch, draws, None if model.config.zero_g else g, segment)
