"""Inference compute dtypes: the names the API and CLI accept, and casting parameters to one.

float32 is the parameters' own dtype (`compute_dtype` gives None: nothing to cast). bfloat16 runs
the conversion network and the TTS's synthesis stage on a CPU's bf16 dot products (see
`ovjax.compiler`); what stays float32 is each caller's to say. JAX is imported only when used, so
the command line can offer `DTYPES` without loading it.
"""
from __future__ import annotations

from ovjax.errors import OvjaxError

DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str):
  """"float32" -> None (compute in the parameters' dtype), "bfloat16" -> jnp.bfloat16."""
  if name not in DTYPES:
    raise OvjaxError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
  import jax.numpy as jnp
  return None if name == "float32" else jnp.dtype(name)


def cast_floating(tree, dtype):
  """Floating-point leaves cast to dtype (None: the tree as is); integer leaves untouched."""
  if dtype is None:
    return tree
  import jax
  import jax.numpy as jnp
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
