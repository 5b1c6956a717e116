"""Residual-coupling normalising flow (VITS `ResidualCouplingBlock`), forward and inverse.

The flow maps the posterior latent z to z_p under a tone-colour embedding g (forward: removes the
speaker's colour) and back (inverse: adds the target's colour). Each coupling is volume preserving
(mean_only), so it is exactly invertible: inverse(forward(x)) == x.
"""
import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers import init
from ovjax.layers.conv import Conv1d
from ovjax.layers.wavenet import WaveNet


class ResidualCouplingLayer(nn.Module):
  channels: int
  hidden_channels: int
  kernel_size: int
  dilation_rate: int
  n_layers: int
  gin_channels: int = 0
  p_dropout: float = 0.0
  mean_only: bool = True

  @nn.compact
  def __call__(self, x, mask, g=None, reverse: bool = False, deterministic: bool = True):
    half = self.channels // 2
    x0, x1 = x[..., :half], x[..., half:]
    h = Conv1d(self.hidden_channels, 1, name="pre")(x0) * mask
    h = WaveNet(self.hidden_channels, self.kernel_size, self.dilation_rate, self.n_layers,
                self.gin_channels, self.p_dropout, name="enc")(h, mask, g, deterministic)
    # Zero-initialised so that a new flow starts as the identity.
    stats = Conv1d(half * (1 if self.mean_only else 2), 1, kernel_init=init.zeros,
                   bias_init=init.zeros, name="post")(h) * mask
    if self.mean_only:
      m, logs = stats, jnp.zeros_like(stats)
    else:
      m, logs = stats[..., :half], stats[..., half:]
    if reverse:
      x1 = (x1 - m) * jnp.exp(-logs) * mask
      logdet = -jnp.sum(logs, axis=(1, 2))
    else:
      x1 = m + x1 * jnp.exp(logs) * mask
      logdet = jnp.sum(logs, axis=(1, 2))
    return jnp.concatenate([x0, x1], axis=-1), logdet


class ResidualCouplingBlock(nn.Module):
  """[coupling, flip] x n_flows. Returns (y, logdet)."""
  channels: int
  hidden_channels: int
  kernel_size: int = 5
  dilation_rate: int = 1
  n_layers: int = 4
  n_flows: int = 4
  gin_channels: int = 0

  def setup(self):
    self.couplings = [
        ResidualCouplingLayer(self.channels, self.hidden_channels, self.kernel_size,
                              self.dilation_rate, self.n_layers, self.gin_channels,
                              name=f"coupling_{i}") for i in range(self.n_flows)]

  def __call__(self, x, mask, g=None, reverse: bool = False, deterministic: bool = True):
    logdet = jnp.zeros(x.shape[0], x.dtype)
    order = reversed(self.couplings) if reverse else self.couplings
    for coupling in order:
      if reverse:
        x = jnp.flip(x, axis=-1)  # Flip is its own inverse; in reverse it comes first.
      x, ld = coupling(x, mask, g, reverse=reverse, deterministic=deterministic)
      logdet = logdet + ld
      if not reverse:
        x = jnp.flip(x, axis=-1)
    return x, logdet
