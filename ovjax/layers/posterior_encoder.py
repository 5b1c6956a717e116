"""Posterior encoder q(z | spectrogram, g) (VITS `PosteriorEncoder`, OpenVoice `enc_q`)."""
import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers.conv import Conv1d
from ovjax.layers.wavenet import WaveNet


class PosteriorEncoder(nn.Module):
  """spec [B, T, F] -> (m, logs), each [B, T, out_channels], masked."""
  out_channels: int
  hidden_channels: int
  kernel_size: int = 5
  dilation_rate: int = 1
  n_layers: int = 16
  gin_channels: int = 0

  @nn.compact
  def __call__(self, spec, mask, g=None, deterministic: bool = True):
    h = Conv1d(self.hidden_channels, 1, name="pre")(spec) * mask
    h = WaveNet(self.hidden_channels, self.kernel_size, self.dilation_rate, self.n_layers,
                self.gin_channels, name="enc")(h, mask, g, deterministic)
    stats = Conv1d(2 * self.out_channels, 1, name="proj")(h) * mask
    return stats[..., :self.out_channels], stats[..., self.out_channels:]


def sample_posterior(m, logs, mask, tau, noise):
  """z = (m + noise * tau * exp(logs)) * mask: tau is the sampling temperature (0 = the mean)."""
  return (m + noise * tau * jnp.exp(logs)) * mask
