"""Monotone rational-quadratic spline with linear tails (Durkan et al., "Neural Spline Flows").

Port of the reference `transforms.py` (the `tails="linear"` path that VITS' ConvFlow uses). The
reference selects in- and out-of-bound elements with boolean-mask indexing; here every element goes
through the spline at an input clamped into [-B, B] and `jnp.where` picks the tail result, so shapes
are static (jit-friendly) and the unused branch can never produce NaNs that leak into gradients.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _knots(unnormalized: jax.Array, bound: float, min_size: float):
  """Softmax bin sizes (each >= min_size) -> (knot positions [..., K+1], bin sizes [..., K])."""
  num_bins = unnormalized.shape[-1]
  sizes = min_size + (1 - min_size * num_bins) * jax.nn.softmax(unnormalized, axis=-1)
  cum = jnp.cumsum(sizes, axis=-1)
  cum = jnp.concatenate([jnp.zeros_like(cum[..., :1]), cum], axis=-1)
  cum = 2 * bound * cum - bound
  # Pin the ends exactly to the bounds (the cumsum is off by rounding), as the reference does.
  cum = cum.at[..., 0].set(-bound).at[..., -1].set(bound)
  return cum, cum[..., 1:] - cum[..., :-1]


def _search(knots: jax.Array, x: jax.Array) -> jax.Array:
  """Index of the bin holding x: (number of knots <= x) - 1, the last knot nudged up by 1e-6 so
  that x == bound falls in the last bin."""
  knots = knots.at[..., -1].add(1e-6)
  idx = jnp.sum(x[..., None] >= knots, axis=-1) - 1
  return jnp.clip(idx, 0, knots.shape[-1] - 2)


def _pick(values: jax.Array, idx: jax.Array) -> jax.Array:
  return jnp.take_along_axis(values, idx[..., None], axis=-1)[..., 0]


def rational_quadratic_spline(inputs, unnormalized_widths, unnormalized_heights,
                              unnormalized_derivatives, inverse: bool = False,
                              tail_bound: float = 5.0, min_bin_width: float = 1e-3,
                              min_bin_height: float = 1e-3, min_derivative: float = 1e-3):
  """Elementwise spline on [-B, B], identity outside. Returns (outputs, log|d outputs/d inputs|).

  inputs: [...]; widths, heights: [..., K]; derivatives: [..., K-1] (the inner knots; the two
  boundary derivatives are fixed to 1 so the spline joins the identity tails smoothly).
  """
  b = tail_bound
  # softplus(log(e^(1-m) - 1)) + m == 1: unit slope at both ends.
  end = np.log(np.exp(1 - min_derivative) - 1)
  pad = jnp.full(unnormalized_derivatives.shape[:-1] + (1,), end, unnormalized_derivatives.dtype)
  derivatives = min_derivative + jax.nn.softplus(
      jnp.concatenate([pad, unnormalized_derivatives, pad], axis=-1))
  cumwidths, widths = _knots(unnormalized_widths, b, min_bin_width)
  cumheights, heights = _knots(unnormalized_heights, b, min_bin_height)

  inside = (inputs >= -b) & (inputs <= b)
  x = jnp.clip(inputs, -b, b)
  idx = _search(cumheights if inverse else cumwidths, x)
  x_k, w_k = _pick(cumwidths, idx), _pick(widths, idx)
  y_k, h_k = _pick(cumheights, idx), _pick(heights, idx)
  s_k = h_k / w_k
  d_k, d_k1 = _pick(derivatives, idx), _pick(derivatives[..., 1:], idx)
  curvature = d_k + d_k1 - 2 * s_k

  if inverse:
    # Solve the rational quadratic for theta (the numerically stable root of Durkan et al.).
    dy = x - y_k
    qa = dy * curvature + h_k * (s_k - d_k)
    qb = h_k * d_k - dy * curvature
    qc = -s_k * dy
    # Rounding can push the discriminant a hair below 0; the reference asserts it is >= 0.
    disc = jnp.maximum(qb * qb - 4 * qa * qc, 0.0)
    theta = (2 * qc) / (-qb - jnp.sqrt(disc))
  else:
    theta = (x - x_k) / w_k
  t1t = theta * (1 - theta)
  denominator = s_k + curvature * t1t
  if inverse:
    out = theta * w_k + x_k
  else:
    out = y_k + h_k * (s_k * theta**2 + d_k * t1t) / denominator
  numerator = s_k**2 * (d_k1 * theta**2 + 2 * s_k * t1t + d_k * (1 - theta)**2)
  logdet = jnp.log(numerator) - 2 * jnp.log(denominator)
  if inverse:
    logdet = -logdet
  return jnp.where(inside, out, inputs), jnp.where(inside, logdet, 0.0)
