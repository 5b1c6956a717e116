"""Winograd conv (ovjax.layers.winograd) against lax.conv_general_dilated.

Tolerances: float32 max abs error <= 1e-5 of the reference output's max abs (measured ~5e-6 at 256
channels, the direct conv's own error against float64 being ~5e-7); bfloat16 <= 5e-2 (bfloat16 has
8 mantissa bits, both paths round at every step); gradients as float32.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ovjax.layers import conv, winograd

TOL = 1e-5
BF16_TOL = 5e-2


def direct(x, kernel, dilation, padding):
  return lax.conv_general_dilated(x, kernel, (1,), [padding], rhs_dilation=(dilation,),
                                  dimension_numbers=("NWC", "WIO", "NWC"),
                                  precision=lax.Precision.HIGHEST)


def rel_err(a, b):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def inputs(k, cin=6, cout=5, t=97, batch=2, seed=0):
  kx, kw = jax.random.split(jax.random.PRNGKey(seed))
  x = jax.random.normal(kx, (batch, t, cin))
  w = jax.random.normal(kw, (k, cin, cout)) / np.sqrt(k * cin)
  return x, w


@pytest.mark.parametrize("chunk_bytes", [winograd.CHUNK_BYTES, 256])  # one step / many steps
@pytest.mark.parametrize("d", [1, 3, 5])
@pytest.mark.parametrize("k", [1, 3, 5, 7, 11])
def test_same_padding(k, d, chunk_bytes):
  x, w = inputs(k)
  pad = d * (k - 1) // 2
  y = winograd.conv1d(x, w, d, chunk_bytes=chunk_bytes)
  assert rel_err(y, direct(x, w, d, (pad, pad))) <= TOL


@pytest.mark.parametrize("t", [1, 2, 13, 255])
@pytest.mark.parametrize("m", [2, 3, 4])
def test_lengths_and_tiles(t, m):
  x, w = inputs(7, t=t, batch=3)
  y = jax.jit(lambda x, w: winograd.conv1d(x, w, 3, m=m, chunk_bytes=256))(x, w)
  assert rel_err(y, direct(x, w, 3, (9, 9))) <= TOL


@pytest.mark.parametrize("padding", [(0, 0), (2, 5), (7, 1)])
def test_explicit_padding(padding):
  x, w = inputs(5, t=41)
  y = winograd.conv1d(x, w, 2, padding=padding, chunk_bytes=256)
  assert rel_err(y, direct(x, w, 2, padding)) <= TOL


def test_wide_channels():
  x, w = inputs(11, cin=256, cout=256, t=301, batch=1)
  assert rel_err(winograd.conv1d(x, w, 5), direct(x, w, 5, (25, 25))) <= TOL


@pytest.mark.parametrize("k,d", [(3, 1), (11, 5)])
def test_bfloat16(k, d):
  x, w = inputs(k, cin=32, cout=32)
  pad = d * (k - 1) // 2
  y = winograd.conv1d(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), d, chunk_bytes=1024)
  assert y.dtype == jnp.bfloat16
  assert rel_err(y, direct(x, w, d, (pad, pad))) <= BF16_TOL


@pytest.mark.parametrize("k,d", [(3, 1), (7, 3), (11, 5)])
def test_grad(k, d):
  x, w = inputs(k)
  pad = d * (k - 1) // 2
  r = jax.random.normal(jax.random.PRNGKey(1), (2, 97, 5))
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * r)
  gx, gw = jax.jit(jax.grad(loss(lambda x, w: winograd.conv1d(x, w, d, chunk_bytes=256)),
                            argnums=(0, 1)))(x, w)
  ex, ew = jax.grad(loss(lambda x, w: direct(x, w, d, (pad, pad))), argnums=(0, 1))(x, w)
  assert rel_err(gx, ex) <= TOL
  assert rel_err(gw, ew) <= TOL


def test_conv1d_module_uses_it_and_keeps_params():
  """A Conv1d the rule sends to Winograd: same parameter tree, same output as the direct conv."""
  layer = conv.Conv1d(256, 11, dilation=3, weight_norm=True)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 203, 256))
  params = layer.init(jax.random.PRNGKey(3), x)
  assert set(params["params"]) == {"weight_v", "weight_g", "bias"}
  assert conv.conv_algorithm(11, 256, 256, 1, 1, True, jnp.float32) == "winograd"
  p = params["params"]
  kernel = conv.weight_norm_kernel(p["weight_v"], p["weight_g"])
  expected = direct(x, kernel, 3, (15, 15)) + p["bias"]
  assert rel_err(layer.apply(params, x), expected) <= TOL


def test_rule():
  rule = conv.conv_algorithm
  assert rule(11, 256, 256, 1, 1, True, jnp.float32) == "winograd"
  assert rule(3, 256, 256, 1, 1, True, jnp.float32) == "winograd"
  assert rule(11, 128, 128, 1, 1, True, jnp.float32) == "direct"  # measured slower at 128
  assert rule(11, 256, 256, 1, 1, True, jnp.bfloat16) == "direct"  # oneDNN's bf16 conv
  assert rule(1, 256, 256, 1, 1, True, jnp.float32) == "direct"  # one tap: nothing to save
  assert rule(11, 256, 256, 2, 1, True, jnp.float32) == "direct"  # strided
  assert rule(11, 256, 256, 1, 2, True, jnp.float32) == "direct"  # grouped
  assert rule(11, 256, 256, 1, 1, False, jnp.float32) == "direct"  # not "same"
