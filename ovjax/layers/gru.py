"""A GRU with PyTorch's gate order and bias layout, that stops at each item's length."""
import jax
import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers import init


class GRU(nn.Module):
  """Single-layer unidirectional GRU, h0 = 0; returns each item's state at its last valid step.

  Parameters keep PyTorch's layout (gates stacked r, z, n) transposed for x @ W:
  weight_ih [I, 3H], weight_hh [H, 3H], bias_ih [3H], bias_hh [3H]. The hidden bias of the
  candidate gate sits inside r * (W_hn h + b_hn), which is why Flax's GRUCell cannot be used.
  """
  hidden_size: int

  @nn.compact
  def __call__(self, x, lengths):
    """x: [B, T, I], lengths: [B] -> final hidden state [B, H]."""
    h_size = self.hidden_size
    shifted = init.Uniform(1.0 / h_size**0.5)  # U(-1/sqrt(H), 1/sqrt(H)), as PyTorch
    w_ih = self.param("weight_ih", shifted, (x.shape[-1], 3 * h_size))
    w_hh = self.param("weight_hh", shifted, (h_size, 3 * h_size))
    b_ih = self.param("bias_ih", shifted, (3 * h_size,))
    b_hh = self.param("bias_hh", shifted, (3 * h_size,))
    gates_x = x @ w_ih + b_ih  # All input projections at once: one big matmul, not T small ones.

    def step(h, inputs):
      gx, valid = inputs
      gh = h @ w_hh + b_hh
      r = jax.nn.sigmoid(gx[:, :h_size] + gh[:, :h_size])
      z = jax.nn.sigmoid(gx[:, h_size:2 * h_size] + gh[:, h_size:2 * h_size])
      n = jnp.tanh(gx[:, 2 * h_size:] + r * gh[:, 2 * h_size:])
      h_new = (1.0 - z) * n + z * h
      return jnp.where(valid[:, None], h_new, h), None

    valid = jnp.arange(x.shape[1])[:, None] < lengths[None, :]  # [T, B]
    h0 = jnp.zeros((x.shape[0], h_size), x.dtype)
    h, _ = jax.lax.scan(step, h0, (jnp.swapaxes(gates_x, 0, 1), valid))
    return h
