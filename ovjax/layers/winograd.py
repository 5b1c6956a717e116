"""Stride-1 dilated 1-D convolution by Winograd minimal filtering (fewer multiplies than direct).

Math. The conv y[t] = sum_j x[t - lo + d*j] W[j] (kernel [K, I, O], dilation d, zero padding
(lo, hi)) is d interleaved dilation-1 correlations: writing time as t = d*s + r, phase r reads only
samples of phase r. Laying time out as [tiles, m, d] (padded to whole tiles) makes the phase an
ordinary axis, so no transposes are needed.

Split the kernel into P = ceil(K/m) pieces of m taps (the last zero-padded). Piece i applied to
output tile n is the correlation F(m, m) of the 2m-1 input samples starting at tile n+i, which
Winograd computes as A^T [(G g_i) . (B^T x_window)] over alpha = 2m-1 points. Every piece is shifted
by a whole tile, so the pieces add up in the transform domain before a single output transform:

  V_p[n] = sum_i U_p[n + i] @ G_{p,i}   (U = B^T windows; one matmul per point p, contraction P*I)
  y[n]   = A^T V[n]

Multiplies per output, in units of I*O: alpha*P/m instead of K (m=4: K=7 -> 3.5, K=11 -> 5.25).
The matrices come from Toom-Cook at the points 0, +-1, +-1/2, 2 and infinity: a convolution
c = g*h is c = Interp [(E g) . (E h)], E evaluating a polynomial at the points; transposing the
map h -> c gives the correlation, so A^T = E^T, G = E, B^T = Interp^T.

XLA runs each op over whole arrays, and intermediates alpha*P/m times the input's size cost more in
memory traffic (and, past malloc's mmap threshold, page faults on every call) than the multiplies
saved; so time is processed in chunks of a few hundred KiB that stay in cache, in a loop that
writes each chunk's output in place.

The kernel transform runs on the traced kernel (cheap), so parameters are those of the direct
conv and gradients flow through it. Arithmetic stays in the input's dtype.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

TILE = 4  # F(4, 4): 7 points; max abs error ~5e-6 of the output's max abs in float32
# Finite interpolation points per tile size (2m-2 of them; infinity is the last point). Small
# powers of two keep the transforms' coefficients exact and the rounding error small.
POINTS = {
    2: (0.0, 1.0),
    3: (0.0, 1.0, -1.0, 0.5),
    4: (0.0, 1.0, -1.0, 0.5, -0.5, 2.0),
}
CHUNK_BYTES = 1 << 19  # input bytes per loop step: measured best between 256 KiB and 1 MiB


def _evaluation(points, n: int) -> np.ndarray:
  """[len(points)+1, n]: a polynomial's n coefficients -> its values at the points and infinity
  (the value 'at infinity' is the leading coefficient)."""
  rows = [[p**j for j in range(n)] for p in points]
  return np.array(rows + [[0.0] * (n - 1) + [1.0]])


@functools.lru_cache(maxsize=None)
def matrices(m: int):
  """(B^T [alpha, alpha], G [alpha, m], A^T [m, alpha]) for F(m, m), alpha = 2m - 1, float64."""
  e = _evaluation(POINTS[m], m)
  interp = np.linalg.inv(_evaluation(POINTS[m], 2 * m - 1))
  return interp.T, e, e.T


def _combine(coeffs: np.ndarray, terms):
  """sum_w coeffs[w] * terms[w], skipping zeros (the matrices are sparse; XLA fuses the sum)."""
  out = None
  for c, t in zip(coeffs, terms):
    if abs(c) < 1e-12:
      continue
    t = t if c == 1.0 else (-t if c == -1.0 else t * float(c))
    out = t if out is None else out + t
  return out


def transform_kernel(kernel: jax.Array, m: int = TILE) -> jax.Array:
  """[K, I, O] -> [alpha, P*I, O]: each point's weights for the P pieces, stacked along I."""
  k, cin, cout = kernel.shape
  pieces = -(-k // m)
  _, g, _ = matrices(m)
  kp = jnp.pad(kernel, ((0, pieces * m - k), (0, 0), (0, 0))).reshape(pieces, m, cin, cout)
  gk = jnp.einsum("aj,pjio->apio", jnp.asarray(g, kernel.dtype), kp,
                  precision=lax.Precision.HIGHEST)
  return gk.reshape(2 * m - 1, pieces * cin, cout)


def _tiles(z: jax.Array, gk: jax.Array, m: int, pieces: int) -> jax.Array:
  """Input tiles [B, n+P, m, d, I] -> output tiles [B, n, m, d, O]."""
  n = z.shape[1] - pieces
  # Piece i reads tile n+i: shift in the input domain (m samples per tile, fewer than the 2m-1
  # points), stacking the shifts along the channels so one matmul contracts all pieces.
  zs = jnp.concatenate([z[:, i:i + n + 1] for i in range(pieces)], axis=-1)
  # Window sample w of tile n is sample w of tile n (w < m) or sample w-m of tile n+1.
  window = [zs[:, :n, w] if w < m else zs[:, 1:, w - m] for w in range(2 * m - 1)]
  bt, _, at = matrices(m)
  u = jnp.stack([_combine(row, window) for row in bt])  # [alpha, B, n, d, P*I]
  v = lax.dot_general(u, gk, (((4,), (1,)), ((0,), (0,))))  # [alpha, B, n, d, O]
  return jnp.stack([_combine(row, list(v)) for row in at], axis=2)


# Jitted so that an eager (un-jitted) model call compiles one program per conv, not each small op.
@functools.partial(jax.jit, static_argnames=("dilation", "padding", "m", "chunk_bytes"))
def conv1d(x: jax.Array, kernel: jax.Array, dilation: int = 1, padding=None, m: int = TILE,
           chunk_bytes: int = CHUNK_BYTES) -> jax.Array:
  """x [B, T, I] (*) kernel [K, I, O], stride 1, zero padding (lo, hi) (None: "same", odd K)
  -> [B, T + lo + hi - dilation*(K-1), O]; lax.conv_general_dilated's result up to rounding."""
  b, t, cin = x.shape
  k, _, cout = kernel.shape
  d = dilation
  lo, hi = (d * (k - 1) // 2,) * 2 if padding is None else tuple(padding)
  assert lo >= 0 and hi >= 0, "non-negative padding only"
  out_len = t + lo + hi - d * (k - 1)
  pieces = -(-k // m)
  n = -(-out_len // (m * d))  # output tiles
  step_max = max(1, chunk_bytes // (x.dtype.itemsize * b * m * d * cin))
  steps = -(-n // step_max)
  step = -(-n // steps)  # tiles per loop step, balanced so the last step wastes little
  n = steps * step
  # Input tiles 0 .. n+P-1 (the last window of the last piece reads one tile past n+P-2).
  z = jnp.pad(x, ((0, 0), (lo, (n + pieces) * m * d - t - lo), (0, 0)))
  z = z.reshape(b, n + pieces, m, d, cin)
  gk = transform_kernel(kernel, m).astype(x.dtype)
  if steps == 1:
    y = _tiles(z, gk, m, pieces)
  else:
    def body(s, y):
      zc = lax.dynamic_slice_in_dim(z, s * step, step + pieces, axis=1)
      return lax.dynamic_update_slice_in_dim(y, _tiles(zc, gk, m, pieces), s * step, axis=1)
    y = lax.fori_loop(0, steps, body, jnp.zeros((b, n, m, d, cout), x.dtype))
  return y.reshape(b, n * m * d, cout)[:, :out_len]
