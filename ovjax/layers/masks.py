"""Sequence masks and the padding rules that make a padded batch equal its items one by one."""
import jax
import jax.numpy as jnp


def sequence_mask(lengths: jax.Array, max_length: int, dtype=jnp.float32) -> jax.Array:
  """[B] lengths -> [B, T, 1] mask, 1 where t < length."""
  return (jnp.arange(max_length)[None, :] < lengths[:, None]).astype(dtype)[..., None]


def upsample_mask(mask: jax.Array, factor: int) -> jax.Array:
  """Mask at `factor` times the time resolution (each frame's samples share its validity)."""
  return jnp.repeat(mask, factor, axis=1)
