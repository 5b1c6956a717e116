"""LayerNorm over the channel (last) axis, as VITS' `modules.LayerNorm` (eps 1e-5)."""
import jax
import jax.numpy as jnp
import flax.linen as nn

from ovjax.layers import init


class ChannelLayerNorm(nn.Module):
  """Normalise each frame over its channels; parameters `gamma`, `beta` as in the reference."""
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    gamma = self.param("gamma", init.ones, (c,))
    beta = self.param("beta", init.zeros, (c,))
    # In float32 whatever the compute dtype (the dtype policy): statistics in bfloat16 drift.
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + self.eps) * gamma + beta).astype(x.dtype)
