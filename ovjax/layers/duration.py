"""Duration predictors of the VITS base speaker TTS: deterministic (`dp`) and stochastic (`sdp`).

Both predict log-durations per token from the text-encoder output x [B, T, C] under a speaker
embedding g [B, 1, gin]; the caller mixes them (logw = sdp * sdp_ratio + dp * (1 - sdp_ratio)).
The stochastic predictor is a normalising flow over (log-duration, auxiliary) pairs: inference runs
it backwards from Gaussian noise; training returns the NLL of the observed integer durations,
dequantised by a learned posterior flow (variational dequantisation, as in VITS).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers import init
from ovjax.layers.conv import Conv1d
from ovjax.layers.norm import ChannelLayerNorm
from ovjax.layers.spline import rational_quadratic_spline


class DDSConv(nn.Module):
  """Dilated depth-separable conv stack: per layer depthwise conv (dilation k^i) -> LN -> GELU ->
  1x1 conv -> LN -> GELU -> dropout, added residually. An optional g is added to the input."""
  channels: int
  kernel_size: int
  n_layers: int
  p_dropout: float = 0.0

  @nn.compact
  def __call__(self, x, mask, g=None, deterministic: bool = True):
    if g is not None:
      x = x + g
    for i in range(self.n_layers):
      y = Conv1d(self.channels, self.kernel_size, dilation=self.kernel_size**i,
                 groups=self.channels, name=f"convs_sep_{i}")(x * mask)
      # The reference uses the exact (erf) GELU.
      y = nn.gelu(ChannelLayerNorm(name=f"norms_1_{i}")(y), approximate=False)
      y = Conv1d(self.channels, 1, name=f"convs_1x1_{i}")(y)
      y = nn.gelu(ChannelLayerNorm(name=f"norms_2_{i}")(y), approximate=False)
      x = x + nn.Dropout(self.p_dropout)(y, deterministic=deterministic)
    return x * mask


class ElementwiseAffine(nn.Module):
  """y = m + exp(logs) * x per channel; params `m`, `logs` [C] (the reference's [C, 1])."""
  channels: int

  @nn.compact
  def __call__(self, x, mask, reverse: bool = False):
    m = self.param("m", init.zeros, (self.channels,))
    logs = self.param("logs", init.zeros, (self.channels,))
    if reverse:
      return (x - m) * jnp.exp(-logs) * mask, -jnp.sum(logs * mask, axis=(1, 2))
    return (m + jnp.exp(logs) * x) * mask, jnp.sum(logs * mask, axis=(1, 2))


class ConvFlow(nn.Module):
  """Spline coupling: the first half of the channels (through a DDSConv conditioned on g) sets the
  knots of a rational-quadratic spline applied to the second half."""
  in_channels: int
  filter_channels: int
  kernel_size: int
  n_layers: int
  num_bins: int = 10
  tail_bound: float = 5.0

  @nn.compact
  def __call__(self, x, mask, g=None, reverse: bool = False):
    half = self.in_channels // 2
    x0, x1 = x[..., :half], x[..., half:]
    h = Conv1d(self.filter_channels, 1, name="pre")(x0)
    h = DDSConv(self.filter_channels, self.kernel_size, self.n_layers, name="convs")(h, mask, g)
    # Zero-initialised so that a new flow starts as the identity.
    h = Conv1d(half * (3 * self.num_bins - 1), 1, kernel_init=init.zeros,
               bias_init=init.zeros, name="proj")(h) * mask
    # PyTorch's channel c * (3K - 1) + j -> [..., c, j].
    h = h.reshape(*h.shape[:-1], half, 3 * self.num_bins - 1)
    k, scale = self.num_bins, math.sqrt(self.filter_channels)
    x1, logabsdet = rational_quadratic_spline(
        x1, h[..., :k] / scale, h[..., k:2 * k] / scale, h[..., 2 * k:], inverse=reverse,
        tail_bound=self.tail_bound)
    y = jnp.concatenate([x0, x1], axis=-1) * mask
    return y, jnp.sum(logabsdet * mask, axis=(1, 2))


def _flow_list(prefix: str, filter_channels: int, kernel_size: int, n_flows: int):
  """The reference's [ElementwiseAffine, (ConvFlow, Flip) x n]; parameterised entries keep their
  list index in the name (`flows_0`, `flows_1`, `flows_3`, ...) so checkpoint names map 1:1."""
  return [ElementwiseAffine(2, name=f"{prefix}_0")] + [
      ConvFlow(2, filter_channels, kernel_size, 3, name=f"{prefix}_{2 * i + 1}")
      for i in range(n_flows)]


def _run_flows(flows, z, mask, g, reverse: bool = False):
  """Forward: the whole list, returns (z, logdet). Reverse (inference) runs it backwards without
  the first ConvFlow, which the reference drops ("useless vflow"): Flip, CF7, Flip, CF5, Flip,
  CF3, Flip, EA0; returns z only."""
  affine, conv_flows = flows[0], flows[1:]
  if reverse:
    for flow in reversed(conv_flows[1:]):
      z, _ = flow(jnp.flip(z, axis=-1), mask, g, reverse=True)
    z, _ = affine(jnp.flip(z, axis=-1), mask, reverse=True)
    return z
  z, logdet = affine(z, mask)
  for flow in conv_flows:
    z, ld = flow(z, mask, g)
    z, logdet = jnp.flip(z, axis=-1), logdet + ld  # Flip: logdet 0.
  return z, logdet


def _gaussian_nll(z, mask):
  """Sum over channels and valid frames of -log N(z; 0, 1). [B, T, C] -> [B]."""
  return jnp.sum(0.5 * (math.log(2 * math.pi) + z * z) * mask, axis=(1, 2))


class StochasticDurationPredictor(nn.Module):
  """Flow-based duration model. `filter_channels` is ignored as in the reference, which forces it
  to `in_channels`.

  reverse=True: logw [B, T, 1] from z = noise * noise_scale through the inverted flow.
  reverse=False: the per-item negative log-likelihood [B] of the integer durations w [B, T, 1]
  (an upper bound, through variational dequantisation); divide by sum(mask) for the VITS loss.

  `noise` is the standard-normal draw [B, T, 2] (inference: before scaling by noise_scale;
  training: the posterior's e_q). When it is None it is drawn from `key`, or from the module's
  "noise" RNG stream when `key` is None too.
  """
  in_channels: int
  filter_channels: int
  kernel_size: int
  p_dropout: float
  n_flows: int = 4
  gin_channels: int = 0

  def setup(self):
    f, k = self.in_channels, self.kernel_size
    self.pre = Conv1d(f, 1)
    self.convs = DDSConv(f, k, 3, self.p_dropout)
    self.proj = Conv1d(f, 1)
    if self.gin_channels:
      self.cond = Conv1d(f, 1)
    self.flows = _flow_list("flows", f, k, self.n_flows)
    # Posterior over the dequantisation noise (training only).
    self.post_pre = Conv1d(f, 1)
    self.post_convs = DDSConv(f, k, 3, self.p_dropout)
    self.post_proj = Conv1d(f, 1)
    self.post_flows = _flow_list("post_flows", f, k, self.n_flows)

  def __call__(self, x, mask, w=None, g=None, reverse: bool = False, noise_scale: float = 1.0,
               noise=None, key=None, deterministic: bool = True):
    # Duration training must not move the text encoder or the speaker table.
    h = self.pre(jax.lax.stop_gradient(x))
    if g is not None:
      h = h + self.cond(jax.lax.stop_gradient(g))
    h = self.proj(self.convs(h, mask, deterministic=deterministic)) * mask

    if noise is None:
      key = self.make_rng("noise") if key is None else key
      noise = jax.random.normal(key, (*x.shape[:2], 2), x.dtype)
    if reverse:
      if self.is_initializing():
        # Create the training-only parameters too, so an inference-initialised tree is complete.
        self._nll(h, mask, jnp.ones_like(mask), noise, deterministic)
      z = _run_flows(self.flows, noise * noise_scale, mask, h, reverse=True)
      return z[..., :1]  # logw (the Log flow is not inverted: the caller takes exp).
    return self._nll(h, mask, w, noise, deterministic)

  def _nll(self, h, mask, w, e_q, deterministic):
    # Posterior q(u, z1 | w, x): a flow from e_q, conditioned on x and the durations themselves.
    h_w = self.post_pre(w)
    h_w = self.post_proj(self.post_convs(h_w, mask, deterministic=deterministic)) * mask
    e_q = e_q * mask
    z_q, logdet_q = _run_flows(self.post_flows, e_q, mask, h + h_w)
    z_u, z1 = z_q[..., :1], z_q[..., 1:]
    # Dequantise: z0 = w - u with u = sigmoid(z_u) in (0, 1); log|du/dz_u| = logsig(z) + logsig(-z).
    # Written as (w - 1) + sigmoid(-z_u): the same value, but for w = 1 and large z_u the
    # reference's 1 - sigmoid(z_u) cancels catastrophically and log(z0) below amplifies it.
    z0 = (w - 1 + jax.nn.sigmoid(-z_u)) * mask
    logdet_q += jnp.sum((jax.nn.log_sigmoid(z_u) + jax.nn.log_sigmoid(-z_u)) * mask, axis=(1, 2))
    logq = -_gaussian_nll(e_q, mask) - logdet_q

    # Log flow, then the main flow to a standard normal.
    z0 = jnp.log(jnp.maximum(z0, 1e-5)) * mask
    logdet = -jnp.sum(z0, axis=(1, 2))
    z, ld = _run_flows(self.flows, jnp.concatenate([z0, z1], axis=-1), mask, h)
    return _gaussian_nll(z, mask) - (logdet + ld) + logq


class DurationPredictor(nn.Module):
  """Deterministic log-duration predictor: 2 x (conv -> ReLU -> LN -> dropout) -> 1x1 proj."""
  in_channels: int
  filter_channels: int
  kernel_size: int
  p_dropout: float
  gin_channels: int = 0

  @nn.compact
  def __call__(self, x, mask, g=None, deterministic: bool = True):
    x = jax.lax.stop_gradient(x)
    if g is not None:
      x = x + Conv1d(self.in_channels, 1, name="cond")(jax.lax.stop_gradient(g))
    for i in (1, 2):
      x = Conv1d(self.filter_channels, self.kernel_size, name=f"conv_{i}")(x * mask)
      x = ChannelLayerNorm(name=f"norm_{i}")(nn.relu(x))
      x = nn.Dropout(self.p_dropout)(x, deterministic=deterministic)
    return Conv1d(1, 1, name="proj")(x * mask) * mask
