"""Reference encoder: spectrogram -> tone-colour embedding (OpenVoice `ref_enc`)."""
from typing import Sequence

import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers import init
from ovjax.layers.conv import Conv2d
from ovjax.layers.gru import GRU
from ovjax.layers.masks import sequence_mask


class ReferenceEncoder(nn.Module):
  """spec [B, T, F], lengths [B] -> tone-colour embedding [B, gin_channels].

  LayerNorm over frequency, six stride-2 3x3 convs (each halves time and frequency, rounding up),
  a GRU over time and a linear projection. Padded frames are zeroed before every conv and the GRU
  stops at each item's own length, so padding never leaks into an embedding.
  """
  gin_channels: int
  filters: Sequence[int] = (32, 32, 64, 64, 128, 128)
  gru_size: int = 128
  layernorm: bool = True

  @nn.compact
  def __call__(self, spec, lengths):
    x = spec
    if self.layernorm:
      x = nn.LayerNorm(epsilon=1e-5, scale_init=init.ones, bias_init=init.zeros,
                       name="layernorm")(x)
    x = x[..., None]  # [B, T, F, 1]: time is height, frequency width.
    for i, features in enumerate(self.filters):
      x = x * sequence_mask(lengths, x.shape[1], x.dtype)[..., None]
      x = Conv2d(features, (3, 3), (2, 2), (1, 1), weight_norm=True, name=f"convs_{i}")(x)
      x = nn.relu(x)
      lengths = (lengths + 1) // 2
    b, t, f, c = x.shape
    # The reference flattens channel-major (index = channel * F + freq).
    x = jnp.transpose(x, (0, 1, 3, 2)).reshape(b, t, c * f)
    h = GRU(self.gru_size, name="gru")(x, lengths)
    fan_in = h.shape[-1]
    return nn.Dense(self.gin_channels, kernel_init=init.torch_default(fan_in),
                    bias_init=init.torch_default(fan_in), name="proj")(h)
