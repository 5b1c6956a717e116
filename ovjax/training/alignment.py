"""Monotonic alignment search (VITS' MAS), batched and on device.

Training aligns text tokens to spectrogram frames by the monotonic path that maximises the
Gaussian log-likelihood of each frame's flow output z_p under its token's prior. The dynamic
programme runs as two `lax.scan`s over frames (forward accumulation, then backtracking), each
step a vector operation over tokens and batch, so it stays on the accelerator. The recursion,
its -1e9 sentinels and its tie-breaking are the reference's (its Cython `maximum_path_each`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_NEG = -1e9  # The reference's max_neg_val.


def log_likelihood_value(z_p, m_p, logs_p):
  """value[b, t, j] = sum_c log N(z_p[b, t, c]; m_p[b, j, c], exp(logs_p[b, j, c])).

  z_p: [B, Ty, C] (frames), m_p, logs_p: [B, Tx, C] (tokens) -> [B, Ty, Tx]. Expanded into the
  same four terms as the reference (two matmuls), in float32.
  """
  z_p, m_p, logs_p = (x.astype(jnp.float32) for x in (z_p, m_p, logs_p))
  s_p_sq_r = jnp.exp(-2.0 * logs_p)
  term1 = jnp.sum(-0.5 * math.log(2 * math.pi) - logs_p, axis=-1)[:, None, :]
  term2 = jnp.einsum("btc,bjc->btj", -0.5 * z_p**2, s_p_sq_r, precision="highest")
  term3 = jnp.einsum("btc,bjc->btj", z_p, m_p * s_p_sq_r, precision="highest")
  term4 = jnp.sum(-0.5 * m_p**2 * s_p_sq_r, axis=-1)[:, None, :]
  return term1 + term2 + term3 + term4


def maximum_path(value, mask):
  """The maximum-value monotonic path: path[b, t, j] = 1 iff frame t is aligned to token j.

  value, mask: [B, Ty, Tx]; mask is 1 on each item's valid (frames, tokens) rectangle. Every
  valid frame gets exactly one token, tokens advance by at most one per frame, the path starts
  at (0, 0) and ends at the last valid (frame, token). Needs frames >= tokens per item.
  """
  value = jax.lax.stop_gradient(value).astype(jnp.float32)
  mask = jax.lax.stop_gradient(mask)
  t_y = jnp.sum(mask[:, :, 0], axis=1).astype(jnp.int32)  # [B] valid frames
  t_x = jnp.sum(mask[:, 0, :], axis=1).astype(jnp.int32)  # [B] valid tokens
  batch, frames, tokens = value.shape
  x = jnp.arange(tokens)[None, :]

  def forward(prev, inputs):
    y, row = inputs  # row: value[:, y, :]
    v_cur = jnp.where(x == y, _NEG, prev)
    shifted = jnp.concatenate([jnp.full((batch, 1), _NEG, prev.dtype), prev[:, :-1]], axis=1)
    first = jnp.where(y == 0, 0.0, _NEG)
    v_prev = jnp.where(x == 0, first, shifted)
    lower = jnp.maximum(0, t_x + y - t_y)[:, None]
    band = (x >= lower) & (x < jnp.minimum(t_x, y + 1)[:, None])
    new = jnp.where(band, row + jnp.maximum(v_prev, v_cur), _NEG)
    return new, new

  init = jnp.full((batch, tokens), _NEG, jnp.float32)
  _, cumulative = jax.lax.scan(forward, init, (jnp.arange(frames), jnp.swapaxes(value, 0, 1)))
  # cumulative[y] is row y; backtracking at frame y compares entries of row y - 1.
  previous_rows = jnp.concatenate([jnp.full_like(cumulative[:1], _NEG), cumulative[:-1]], axis=0)

  def backward(index, inputs):
    y, prev_row = inputs
    active = y < t_y
    row = (x == index[:, None]) & active[:, None]
    here = jnp.take_along_axis(prev_row, index[:, None], axis=1)[:, 0]
    left = jnp.take_along_axis(prev_row, jnp.maximum(index - 1, 0)[:, None], axis=1)[:, 0]
    step = active & (index != 0) & ((index == y) | (here < left))
    return index - step.astype(index.dtype), row

  _, path = jax.lax.scan(backward, t_x - 1, (jnp.arange(frames), previous_rows), reverse=True)
  return jnp.swapaxes(path, 0, 1).astype(mask.dtype) * mask
