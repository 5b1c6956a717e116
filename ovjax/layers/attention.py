"""Post-norm transformer with windowed relative-position attention (VITS `attentions.Encoder`).

Activations are channels-last [B, T, C]; masks are [B, T, 1] and attention masks [B, T, T]
(mask_i * mask_j). The relative-position terms are computed directly from their definition with
small gathers (a [T, T] view of the 2w+1 relative logits, and a [T, 2w+1] band of the attention
probabilities), so they are exact for every T, including T <= window.
"""
import math

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from ovjax.layers import init
from ovjax.layers.conv import Conv1d
from ovjax.layers.norm import ChannelLayerNorm

# The reference fills masked scores with -1e4 rather than -inf: fully masked (padded) rows then
# stay finite (uniform), and are zeroed by the output mask afterwards.
MASK_VALUE = -1e4


def _relative_to_absolute_index(t: int, window: int):
  """For scores[i, j]: index j - i + w into the 2w+1 relative table, and whether |j - i| <= w."""
  pos = np.arange(t)
  rel = pos[None, :] - pos[:, None] + window
  valid = (rel >= 0) & (rel <= 2 * window)
  return np.clip(rel, 0, 2 * window), valid


def _absolute_to_relative_index(t: int, window: int):
  """For band[i, r]: column i + r - w of the [T, T] matrix, and whether it lies inside [0, T)."""
  col = np.arange(t)[:, None] + np.arange(2 * window + 1)[None, :] - window
  valid = (col >= 0) & (col < t)
  return np.clip(col, 0, t - 1), valid


class RelativeMultiHeadAttention(nn.Module):
  """Self-attention with relative-position keys and values shared by all heads.

  score[i, j] = q'_i . k_j + (|j - i| <= w ? q'_i . E_k[j - i + w] : 0), q' = q / sqrt(d_k);
  out_i = sum_j p_ij v_j + sum_{|r| <= w} p_{i, i+r} E_v[r + w], then the output 1x1 conv.
  x: [B, T, C], attn_mask: [B, T, T] (1 = attend). Returns [B, T, out_channels].
  """
  channels: int
  out_channels: int
  n_heads: int
  p_dropout: float = 0.0
  window_size: int = 4

  @nn.compact
  def __call__(self, x, attn_mask, deterministic: bool = True):
    b, t, _ = x.shape
    h, w = self.n_heads, self.window_size
    d_k = self.channels // h
    qkv_init = init.xavier_uniform(self.channels, self.channels)  # As the reference (1x1 convs).
    split = lambda y: y.reshape(b, t, h, d_k).transpose(0, 2, 1, 3)  # -> [B, H, T, d_k]
    q = split(Conv1d(self.channels, 1, kernel_init=qkv_init, name="conv_q")(x)) / math.sqrt(d_k)
    k = split(Conv1d(self.channels, 1, kernel_init=qkv_init, name="conv_k")(x))
    v = split(Conv1d(self.channels, 1, kernel_init=qkv_init, name="conv_v")(x))
    # PyTorch's shape [1, 2w+1, d_k] (the leading 1: one table shared by the heads).
    rel_init = init.Normal(d_k**-0.5)
    emb_rel_k = self.param("emb_rel_k", rel_init, (1, 2 * w + 1, d_k))[0].astype(x.dtype)
    emb_rel_v = self.param("emb_rel_v", rel_init, (1, 2 * w + 1, d_k))[0].astype(x.dtype)

    scores = jnp.einsum("bhid,bhjd->bhij", q, k)
    # q'_i . E_k[r] for every offset r, placed at [i, i + r - w] where that column exists.
    rel_logits = jnp.einsum("bhid,rd->bhir", q, emb_rel_k)
    idx, valid = _relative_to_absolute_index(t, w)
    rel_scores = jnp.take_along_axis(rel_logits, jnp.asarray(idx)[None, None], axis=-1)
    scores = scores + jnp.where(valid, rel_scores, 0)
    scores = jnp.where(attn_mask[:, None] == 0, MASK_VALUE, scores)

    # Softmax in float32 at least (bfloat16 compute); float64 stays float64.
    p = jax.nn.softmax(scores.astype(jnp.promote_types(scores.dtype, jnp.float32)),
                       axis=-1).astype(x.dtype)
    p = nn.Dropout(self.p_dropout)(p, deterministic=deterministic)
    out = jnp.einsum("bhij,bhjd->bhid", p, v)
    # The band p[i, i + r - w] (zero off the edges) weights the relative value embeddings.
    idx, valid = _absolute_to_relative_index(t, w)
    band = jnp.where(valid, jnp.take_along_axis(p, jnp.asarray(idx)[None, None], axis=-1), 0)
    out = out + jnp.einsum("bhir,rd->bhid", band, emb_rel_v)

    out = out.transpose(0, 2, 1, 3).reshape(b, t, self.channels)
    return Conv1d(self.out_channels, 1, name="conv_o")(out)


class FFN(nn.Module):
  """conv(k) -> ReLU -> dropout -> conv(k), masked, with the reference's manual "same" padding
  (left (k-1)//2, right k//2, which differ for even k)."""
  out_channels: int
  filter_channels: int
  kernel_size: int
  p_dropout: float = 0.0

  def _pad(self, x):
    k = self.kernel_size
    return jnp.pad(x, ((0, 0), ((k - 1) // 2, k // 2), (0, 0)))

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True):
    x = Conv1d(self.filter_channels, self.kernel_size, padding=0, name="conv_1")(
        self._pad(x * mask))
    x = jax.nn.relu(x)
    x = nn.Dropout(self.p_dropout)(x, deterministic=deterministic)
    x = Conv1d(self.out_channels, self.kernel_size, padding=0, name="conv_2")(self._pad(x * mask))
    return x * mask


class Encoder(nn.Module):
  """n_layers of (attention, add, LayerNorm, FFN, add, LayerNorm): post-norm.

  x: [B, T, C], mask: [B, T, 1]. Returns [B, T, C], masked.
  """
  hidden_channels: int
  filter_channels: int
  n_heads: int
  n_layers: int
  kernel_size: int = 1
  p_dropout: float = 0.0
  window_size: int = 4

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True):
    attn_mask = mask * jnp.swapaxes(mask, 1, 2)  # [B, T, 1] * [B, 1, T] -> [B, T, T]
    drop = nn.Dropout(self.p_dropout)
    x = x * mask
    for i in range(self.n_layers):
      y = RelativeMultiHeadAttention(
          self.hidden_channels, self.hidden_channels, self.n_heads, self.p_dropout,
          self.window_size, name=f"attn_layers_{i}")(x, attn_mask, deterministic)
      y = drop(y, deterministic=deterministic)
      x = ChannelLayerNorm(name=f"norm_layers_1_{i}")(x + y)
      y = FFN(self.hidden_channels, self.filter_channels, self.kernel_size, self.p_dropout,
              name=f"ffn_layers_{i}")(x, mask, deterministic)
      y = drop(y, deterministic=deterministic)
      x = ChannelLayerNorm(name=f"norm_layers_2_{i}")(x + y)
    return x * mask
