"""HiFi-GAN generator (V1, ResBlock1), the decoder of VITS and OpenVoice (`dec`).

Masked throughout: every conv's input is zeroed past each item's length at that resolution, which
is exactly the zero padding the reference sees on an unpadded item, so a padded batch produces
each item's own output.
"""
from typing import Sequence

import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers import init, time_tiling
from ovjax.layers.conv import Conv1d, ConvTranspose1d
from ovjax.layers.masks import upsample_mask

LRELU_SLOPE = 0.1
# HiFi-GAN's init_weights: N(0, 0.01) for the upsampling and resblock kernels (biases keep
# PyTorch's default). (In PyTorch this lands on the weight tensor that weight norm recomputes from
# g and v before every forward, so there it is overwritten; we apply it to v, as intended.)
_resblock_init = init.Normal(0.01)


class ResBlock1(nn.Module):
  channels: int
  kernel_size: int = 3
  dilations: Sequence[int] = (1, 3, 5)

  @nn.compact
  def __call__(self, x, mask):
    for i, d in enumerate(self.dilations):
      t = nn.leaky_relu(x, LRELU_SLOPE) * mask
      t = Conv1d(self.channels, self.kernel_size, dilation=d, weight_norm=True,
                 kernel_init=_resblock_init, name=f"convs1_{i}")(t)
      t = nn.leaky_relu(t, LRELU_SLOPE) * mask
      t = Conv1d(self.channels, self.kernel_size, weight_norm=True, kernel_init=_resblock_init,
                 name=f"convs2_{i}")(t)
      x = x + t
    return x * mask


class Generator(nn.Module):
  """latent [B, T, C] -> waveform [B, T * prod(upsample_rates)]."""
  upsample_initial_channel: int
  resblock_kernel_sizes: Sequence[int]
  resblock_dilation_sizes: Sequence[Sequence[int]]
  upsample_rates: Sequence[int]
  upsample_kernel_sizes: Sequence[int]
  gin_channels: int = 0

  @nn.compact
  def __call__(self, x, mask, g=None):
    x = Conv1d(self.upsample_initial_channel, 7, name="conv_pre")(x * mask)
    if self.gin_channels > 0:
      cond = Conv1d(self.upsample_initial_channel, 1, name="cond")
      if g is not None:  # g=None: unconditioned (the cond layer is skipped, bias included).
        x = x + cond(g)
      elif self.is_initializing():
        cond(jnp.zeros((1, 1, self.gin_channels), x.dtype))
    n_kernels = len(self.resblock_kernel_sizes)
    for i, (rate, k) in enumerate(zip(self.upsample_rates, self.upsample_kernel_sizes)):
      ch = self.upsample_initial_channel // (2**(i + 1))
      x = nn.leaky_relu(x, LRELU_SLOPE) * mask
      x = ConvTranspose1d(ch, k, rate, padding=(k - rate) // 2, weight_norm=True,
                          kernel_init=_resblock_init, name=f"ups_{i}")(x)
      mask = upsample_mask(mask, rate)
      x = self._resblocks(i, ch, x, mask)
    # The reference uses leaky_relu's default slope (0.01) here, not LRELU_SLOPE.
    x = nn.leaky_relu(x, 0.01) * mask
    x = Conv1d(1, 7, use_bias=False, name="conv_post")(x)
    return (jnp.tanh(x) * mask)[..., 0]

  def _resblocks(self, level: int, ch: int, x, mask):
    """The mean of the level's resblocks; on CPU over long inputs in cache-sized time tiles
    (`ovjax.layers.time_tiling`), the same numbers to float rounding."""
    n_kernels = len(self.resblock_kernel_sizes)
    specs = [(rk, tuple(rd)) for rk, rd in zip(self.resblock_kernel_sizes,
                                                self.resblock_dilation_sizes)]
    blocks = [ResBlock1(ch, rk, rd, name=f"resblocks_{level * n_kernels + j}")
              for j, (rk, rd) in enumerate(specs)]
    halo = max(time_tiling.reach_of_resblock(rk, rd) for rk, rd in specs)
    samples = time_tiling.tile_samples(x.shape, x.dtype, halo)
    if samples is None or self.is_initializing():
      return sum(block(x, mask) for block in blocks) / n_kernels
    # Inside the loop the blocks run as pure functions of their (bound) parameters.
    pure = [(block.clone(parent=None), block.variables) for block in blocks]
    mean = lambda xt, mt: sum(b.apply(v, xt, mt) for b, v in pure) / n_kernels
    return time_tiling.tiled(mean, x, mask, halo, samples)
