"""The losses of VITS' recipe (jaywalnut310/vits `losses.py`), all computed in float32.

Discriminator outputs and feature maps are lists (one entry per sub-discriminator); every mean is
over all elements, so the channels-last layout gives the reference's values.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _f32(x):
  return x.astype(jnp.float32)


def discriminator_loss(real_scores, fake_scores):
  """Least squares: sum over discriminators of mean((1 - D(y))^2) + mean(D(y_hat)^2)."""
  return sum(jnp.mean((1 - _f32(r))**2) + jnp.mean(_f32(f)**2)
             for r, f in zip(real_scores, fake_scores))


def generator_loss(fake_scores):
  """Least squares: sum over discriminators of mean((1 - D(y_hat))^2)."""
  return sum(jnp.mean((1 - _f32(f))**2) for f in fake_scores)


def feature_loss(real_fmaps, fake_fmaps):
  """2 x the sum over every feature map of mean |real - fake| (real maps are constants)."""
  loss = 0.0
  for real, fake in zip(real_fmaps, fake_fmaps):
    for r, f in zip(real, fake):
      loss = loss + jnp.mean(jnp.abs(jax.lax.stop_gradient(_f32(r)) - _f32(f)))
  return 2.0 * loss


def kl_loss(z_p, logs_q, m_p, logs_p, mask):
  """KL between the posterior (through the flow) and the text prior expanded to frames, per
  valid frame: sum(logs_p - logs_q - 1/2 + (z_p - m_p)^2 exp(-2 logs_p) / 2) / sum(mask).
  Arrays [B, T, C], mask [B, T, 1]."""
  z_p, logs_q, m_p, logs_p, mask = map(_f32, (z_p, logs_q, m_p, logs_p, mask))
  kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p)**2 * jnp.exp(-2.0 * logs_p)
  return jnp.sum(kl * mask) / jnp.sum(mask)


def mel_loss(y_mel, y_hat_mel):
  """Mean absolute error of the log-mels (VITS scales it by c_mel = 45)."""
  return jnp.mean(jnp.abs(_f32(y_mel) - _f32(y_hat_mel)))


def duration_loss(logw, w, x_mask):
  """The deterministic predictor's per-item loss: sum((logw - log(w + 1e-6))^2) over tokens,
  divided by the number of tokens in the whole batch (as the reference). logw, w: [B, Tx, 1]."""
  logw, w, x_mask = map(_f32, (logw, w, x_mask))
  target = jnp.log(w + 1e-6) * x_mask
  return jnp.sum((logw - target)**2, axis=(1, 2)) / jnp.sum(x_mask)
