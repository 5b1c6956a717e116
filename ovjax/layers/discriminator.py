"""VITS' discriminator: one scale discriminator (on the raw waveform) and period discriminators
(the waveform folded into [T / p, p] for p = 2, 3, 5, 7, 11), all weight-normed.

`width` scales every channel count (1 = the full 46.7 M-parameter layout; the training goldens
use 1/4) while keeping kernels, strides, paddings and channels per group; the parameter names
follow the reference's `discriminators.N.convs.M` / `conv_post`.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers.conv import Conv1d, Conv2d

LRELU_SLOPE = 0.1
# (channels, kernel, stride, channels per group of the input or None for dense, padding).
_SCALE_LAYERS = ((16, 15, 1, None, 7), (64, 41, 4, 4, 20), (256, 41, 4, 4, 20),
                 (1024, 41, 4, 4, 20), (1024, 41, 4, 4, 20), (1024, 5, 1, None, 2))
_PERIOD_CHANNELS = (32, 128, 512, 1024, 1024)


def _scaled(channels: int, width: float) -> int:
  return max(1, int(round(channels * width)))


class ScaleDiscriminator(nn.Module):
  """DiscriminatorS: strided grouped 1-D convs over the waveform [B, T, 1]."""
  width: float = 1.0

  @nn.compact
  def __call__(self, x):
    fmaps = []
    for i, (ch, k, stride, per_group, pad) in enumerate(_SCALE_LAYERS):
      groups = 1 if per_group is None else x.shape[-1] // per_group
      x = Conv1d(_scaled(ch, self.width), k, padding=pad, stride=stride, groups=max(groups, 1),
                 weight_norm=True, name=f"convs_{i}")(x)
      x = nn.leaky_relu(x, LRELU_SLOPE)
      fmaps.append(x)
    x = Conv1d(1, 3, padding=1, weight_norm=True, name="conv_post")(x)
    fmaps.append(x)
    return x.reshape(x.shape[0], -1), fmaps


class PeriodDiscriminator(nn.Module):
  """DiscriminatorP: the waveform folded to [B, T / period, period, 1] (reflect-padded to a
  multiple of the period), then (5, 1) convs striding 3 along the folded time axis."""
  period: int
  width: float = 1.0
  kernel_size: int = 5
  stride: int = 3

  @nn.compact
  def __call__(self, x):
    b, t, _ = x.shape
    if t % self.period:
      x = jnp.pad(x, ((0, 0), (0, self.period - t % self.period), (0, 0)), mode="reflect")
    x = x.reshape(b, -1, self.period, 1)
    fmaps = []
    pad = (self.kernel_size - 1) // 2
    for i, ch in enumerate(_PERIOD_CHANNELS):
      stride = self.stride if i < len(_PERIOD_CHANNELS) - 1 else 1
      x = Conv2d(_scaled(ch, self.width), (self.kernel_size, 1), (stride, 1), (pad, 0),
                 weight_norm=True, name=f"convs_{i}")(x)
      x = nn.leaky_relu(x, LRELU_SLOPE)
      fmaps.append(x)
    x = Conv2d(1, (3, 1), (1, 1), (1, 0), weight_norm=True, name="conv_post")(x)
    fmaps.append(x)
    return x.reshape(b, -1), fmaps


class MultiPeriodDiscriminator(nn.Module):
  """waveform [B, T] -> (one score map [B, n] per discriminator, their feature maps)."""
  width: float = 1.0
  periods: Sequence[int] = (2, 3, 5, 7, 11)

  @nn.compact
  def __call__(self, audio):
    x = audio[..., None]
    discriminators = [ScaleDiscriminator(self.width, name="discriminators_0")] + [
        PeriodDiscriminator(p, self.width, name=f"discriminators_{i + 1}")
        for i, p in enumerate(self.periods)]
    scores, fmaps = [], []
    for d in discriminators:
      score, fmap = d(x)
      scores.append(score)
      fmaps.append(fmap)
    return scores, fmaps
