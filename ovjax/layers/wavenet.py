"""WaveNet-style non-causal gated stack (VITS `modules.WN`)."""
import jax
import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers.conv import Conv1d


class WaveNet(nn.Module):
  """Gated dilated convs with residual and skip paths, conditioned on a global embedding g.

  x: [B, T, H], mask: [B, T, 1], g: [B, 1, G] or None. Returns the masked sum of skips [B, T, H].
  """
  hidden_channels: int
  kernel_size: int
  dilation_rate: int
  n_layers: int
  gin_channels: int = 0
  p_dropout: float = 0.0

  @nn.compact
  def __call__(self, x, mask, g=None, deterministic: bool = True):
    h_ch = self.hidden_channels
    conditioned = self.gin_channels > 0 and g is not None
    if self.gin_channels > 0:
      # One 1x1 conv yields every layer's conditioning; applied even to a zero g (v2 zero_g),
      # because its bias still shifts the gates. The layer exists whenever the config says so.
      cond_layer = Conv1d(2 * h_ch * self.n_layers, 1, weight_norm=True, name="cond_layer")
      if conditioned:
        g_all = cond_layer(g)
      elif self.is_initializing():
        cond_layer(jnp.zeros((1, 1, self.gin_channels), x.dtype))
    output = jnp.zeros_like(x)
    for i in range(self.n_layers):
      h = Conv1d(2 * h_ch, self.kernel_size, dilation=self.dilation_rate**i, weight_norm=True,
                 name=f"in_layers_{i}")(x)
      if conditioned:
        h = h + g_all[..., 2 * h_ch * i:2 * h_ch * (i + 1)]
      acts = jnp.tanh(h[..., :h_ch]) * jax.nn.sigmoid(h[..., h_ch:])
      acts = nn.Dropout(self.p_dropout)(acts, deterministic=deterministic)
      last = i == self.n_layers - 1
      res_skip = Conv1d(h_ch if last else 2 * h_ch, 1, weight_norm=True,
                        name=f"res_skip_layers_{i}")(acts)
      if last:
        output = output + res_skip
      else:
        x = (x + res_skip[..., :h_ch]) * mask
        output = output + res_skip[..., h_ch:]
    return output * mask
