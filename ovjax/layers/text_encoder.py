"""Text encoder of the base speaker TTS (VITS `TextEncoder`, OpenVoice `enc_p`)."""
import math

import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers import init
from ovjax.layers.attention import Encoder
from ovjax.layers.conv import Conv1d
from ovjax.layers.masks import sequence_mask


class TextEncoder(nn.Module):
  """Token ids -> (h, m_p, logs_p, mask): the prior's per-token mean and log-std.

  ids: [B, T] int, lengths: [B]. Returns h [B, T, hidden], m_p and logs_p [B, T, out],
  mask [B, T, 1]; everything is zero past each item's length.
  """
  n_vocab: int
  out_channels: int
  hidden_channels: int
  filter_channels: int
  n_heads: int
  n_layers: int
  kernel_size: int
  p_dropout: float

  @nn.compact
  def __call__(self, ids, lengths, deterministic: bool = True):
    emb = nn.Embed(self.n_vocab, self.hidden_channels,
                   embedding_init=init.Normal(self.hidden_channels**-0.5),
                   name="emb")
    # The sqrt(hidden) scale undoes the small init, as in the reference.
    x = emb(ids) * math.sqrt(self.hidden_channels)
    mask = sequence_mask(lengths, ids.shape[1], x.dtype)
    x = Encoder(self.hidden_channels, self.filter_channels, self.n_heads, self.n_layers,
                self.kernel_size, self.p_dropout, name="encoder")(x * mask, mask, deterministic)
    stats = Conv1d(2 * self.out_channels, 1, name="proj")(x) * mask
    m_p, logs_p = jnp.split(stats, 2, axis=-1)
    return x, m_p, logs_p, mask
