"""1-D and 2-D convolutions in channels-last layout, with optional weight norm.

Layouts: activations are [B, T, C]; 1-D kernels are [K, I, O] (PyTorch Conv1d is [O, I, K]);
transposed-conv kernels are [K, I, O] as well (PyTorch ConvTranspose1d is [I, O, K]).

Weight norm (w = g * v / ||v||) is a parameterisation for training: a weight-normed layer owns
`weight_v` and `weight_g`. For inference `fold_weight_norm` replaces them by a plain `kernel` once at
load time; a layer that finds `kernel` in its parameters uses it directly, so one module definition
serves both trees.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
import flax.linen as nn
import numpy as np

from ovjax.layers import init, winograd


def default_kernel_init(key, shape, dtype=jnp.float32):
  """PyTorch's default weight init for a kernel whose last axis is the output ([..., I, O])."""
  return init.torch_default(int(np.prod(shape[:-1])))(key, shape, dtype)


def _bias(module: nn.Module, features: int, fan_in: int, bias_init):
  bias_init = init.torch_default(fan_in) if bias_init is None else bias_init
  return module.param("bias", bias_init, (features,))


def weight_norm_kernel(v: jax.Array, g: jax.Array) -> jax.Array:
  """g * v / ||v||. g is broadcastable to v (PyTorch keeps it as [O, 1, 1]); the norm is taken over
  every axis where g has size 1, so the parameter tree itself says how to fold it.
  NumPy in, NumPy out (folding at load time needs no compilation)."""
  xp = np if isinstance(v, np.ndarray) and isinstance(g, np.ndarray) else jnp
  axes = tuple(a for a in range(v.ndim) if g.shape[a] == 1)
  return v * (g / xp.sqrt(xp.sum(xp.square(v), axis=axes, keepdims=True)))


def _kernel(module: nn.Module, shape, weight_norm: bool, g_axis: int, kernel_init):
  """The layer's effective kernel: plain, folded, or g * v / ||v|| with one g along `g_axis`."""
  if weight_norm and not module.has_variable("params", "kernel"):
    v = module.param("weight_v", kernel_init, shape)
    g = module.param("weight_g", init.Norm(tuple(a for a in range(len(shape)) if a != g_axis)), v)
    return weight_norm_kernel(v, g)
  return module.param("kernel", kernel_init, shape)


# How Conv1d computes a conv on CPU, from per-shape timings of the decoder's convs (2-core AMD
# EPYC with AVX512-BF16, 2026-12; the table is in the README's design notes): float32 convs at
# 256+ channels by Winograd (ovjax.layers.winograd, F(4,4): 1.04-1.65x the direct conv; the
# whole converter 4 % faster with oneDNN's convs beside it); below 256 channels it loses
# (0.3-0.9x), the direct conv already running near the matmul peak there and the transforms'
# memory traffic dominating. bfloat16 convs stay direct: under ovjax's inference options
# (`ovjax.compiler`) oneDNN runs them on the CPU's bf16 dot products, 2-3x float32. Other
# backends: always the direct conv (nothing measured there).
WINOGRAD_MIN_CHANNELS = 256


def conv_algorithm(kernel_size: int, in_channels: int, out_channels: int, stride: int,
                   groups: int, same: bool, dtype) -> str:
  """"winograd" or "direct"."""
  if (jax.default_backend() == "cpu" and jnp.dtype(dtype) == jnp.float32
      and same and stride == 1 and groups == 1 and kernel_size % 2 == 1 and kernel_size >= 3
      and min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS):
    return "winograd"
  return "direct"


class Conv1d(nn.Module):
  """Conv1d over [B, T, C] with PyTorch-style symmetric zero padding ("same" by default)."""
  features: int
  kernel_size: int
  dilation: int = 1
  padding: int | None = None
  groups: int = 1
  stride: int = 1
  use_bias: bool = True
  weight_norm: bool = False
  kernel_init: nn.initializers.Initializer = default_kernel_init
  bias_init: nn.initializers.Initializer | None = None  # None: PyTorch's default for this layer

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (self.kernel_size, x.shape[-1] // self.groups, self.features)
    kernel = _kernel(self, shape, self.weight_norm, 2, self.kernel_init)
    same = self.dilation * (self.kernel_size - 1) // 2
    pad = same if self.padding is None else self.padding
    algorithm = conv_algorithm(self.kernel_size, x.shape[-1], self.features, self.stride,
                               self.groups, pad == same, x.dtype)
    if algorithm == "winograd":
      y = winograd.conv1d(x, kernel.astype(x.dtype), self.dilation, (pad, pad))
    else:
      y = lax.conv_general_dilated(
          x, kernel.astype(x.dtype), window_strides=(self.stride,), padding=[(pad, pad)],
          rhs_dilation=(self.dilation,), dimension_numbers=("NWC", "WIO", "NWC"),
          feature_group_count=self.groups)
    if self.use_bias:
      y = y + _bias(self, self.features, shape[0] * shape[1], self.bias_init).astype(x.dtype)
    return y


def _polyphase_taps(kernel_size: int, stride: int, padding: int):
  """Tap offsets of a transposed conv seen as `stride` ordinary convs (one per output phase).

  Output sample o = stride*m + r takes x[m - j] * W[stride*j + r + padding] for every j with a
  valid kernel index. Returns (j_lo, j_hi): the union of offsets over all phases.
  """
  j_lo = -((stride - 1 + padding) // stride)  # ceil(-(s-1+p)/s)
  j_hi = (kernel_size - 1 - padding) // stride
  return j_lo, j_hi


def polyphase_kernel(kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """[K, I, O] transposed-conv kernel -> [J, I, stride*O] ordinary-conv kernel (phase-major)."""
  k, cin, cout = kernel.shape
  j_lo, j_hi = _polyphase_taps(k, stride, padding)
  taps = np.arange(-j_hi, -j_lo + 1)  # conv tap t reads x[m + t], i.e. j = -t
  idx = np.full((len(taps), stride), -1, dtype=np.int64)
  for ti, t in enumerate(taps):
    for r in range(stride):
      kk = stride * (-t) + r + padding
      if 0 <= kk < k:
        idx[ti, r] = kk
  gathered = jnp.take(kernel, np.maximum(idx, 0), axis=0)  # [J, s, I, O]
  gathered = jnp.where((idx >= 0)[:, :, None, None], gathered, 0)
  return jnp.transpose(gathered, (0, 2, 1, 3)).reshape(len(taps), cin, stride * cout)


class ConvTranspose1d(nn.Module):
  """PyTorch ConvTranspose1d (output length stride*T when kernel - stride = 2*padding).

  Computed as one stride-1 conv producing all `stride` output phases as channels, then an
  interleave: no zero-stuffed input, so no wasted multiplies on inserted zeros.
  """
  features: int
  kernel_size: int
  stride: int
  padding: int = 0
  use_bias: bool = True
  weight_norm: bool = False
  kernel_init: nn.initializers.Initializer | None = None  # None: PyTorch's default
  bias_init: nn.initializers.Initializer | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    assert self.kernel_size - self.stride == 2 * self.padding, "only length-exact upsampling"
    shape = (self.kernel_size, x.shape[-1], self.features)
    # PyTorch computes a transposed conv's fan-in from its [I, O, K] weight's dim 1: O * K.
    fan_in = self.kernel_size * self.features
    kernel_init = init.torch_default(fan_in) if self.kernel_init is None else self.kernel_init
    # PyTorch's weight norm is over dim 0 of [I, O, K]: one g per *input* channel.
    kernel = _kernel(self, shape, self.weight_norm, 1, kernel_init)
    j_lo, j_hi = _polyphase_taps(self.kernel_size, self.stride, self.padding)
    y = lax.conv_general_dilated(
        x, polyphase_kernel(kernel, self.stride, self.padding).astype(x.dtype),
        window_strides=(1,), padding=[(j_hi, -j_lo)], dimension_numbers=("NWC", "WIO", "NWC"))
    b, t, _ = y.shape
    y = y.reshape(b, t * self.stride, self.features)
    if self.use_bias:
      y = y + _bias(self, self.features, fan_in, self.bias_init).astype(x.dtype)
    return y


class Conv2d(nn.Module):
  """Conv2d over [B, H, W, C] with symmetric padding; kernels [KH, KW, I, O]."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (1, 1)
  use_bias: bool = True
  weight_norm: bool = False
  kernel_init: nn.initializers.Initializer = default_kernel_init
  bias_init: nn.initializers.Initializer | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = _kernel(self, shape, self.weight_norm, 3, self.kernel_init)
    y = lax.conv_general_dilated(
        x, kernel.astype(x.dtype), window_strides=self.strides,
        padding=[(p, p) for p in self.padding], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      fan_in = int(np.prod(shape[:-1]))
      y = y + _bias(self, self.features, fan_in, self.bias_init).astype(x.dtype)
    return y


def fold_weight_norm(params):
  """Replace every {weight_g, weight_v} pair by the kernel it parameterises (once, at load time)."""
  if not isinstance(params, dict):
    return params
  out = {name: fold_weight_norm(value) for name, value in params.items()}
  if "weight_v" in out and "weight_g" in out:
    out["kernel"] = weight_norm_kernel(out.pop("weight_v"), out.pop("weight_g"))
  return out
