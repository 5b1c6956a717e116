"""Parameter initialisers that also know how to draw themselves from shared standard draws.

Every initialiser in ovjax's modules is one of the small classes below. Each is an ordinary Flax
initialiser (`init(key, shape, dtype)`), and each can also turn slices of standard uniform / normal
draws into its values (`from_draws`). `fast_init` uses the latter: XLA on CPU spends ~0.25 s
compiling each separate `jax.random` call, so a full-size model's ~500 parameters would take over
a minute to initialise through Flax's per-parameter keys; drawn as two flat arrays, the whole model
initialises in about a second, with the same distributions.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import threading

import jax
import jax.numpy as jnp
import numpy as np

_recording = threading.local()


class Initializer:
  """Base: `__call__` is the Flax initialiser; `from_draws(u, n)` maps standard uniform [0, 1) and
  standard normal draws (NumPy, of the parameter's shape) to its values."""
  uses_uniform = False
  uses_normal = False

  def __call__(self, key, shape, dtype=jnp.float32):
    if _recording_now(key):
      return _log(self, jnp.zeros(shape, dtype))
    return self.sample(key, shape, dtype)

  def sample(self, key, shape, dtype):
    raise NotImplementedError

  def from_draws(self, u: np.ndarray | None, n: np.ndarray | None, previous: np.ndarray | None):
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Uniform(Initializer):
  """U(-bound, bound)."""
  bound: float
  uses_uniform = True

  def sample(self, key, shape, dtype):
    return jax.random.uniform(key, shape, dtype, -self.bound, self.bound)

  def from_draws(self, u, n, previous):
    return ((2 * u - 1) * self.bound).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Normal(Initializer):
  """N(0, stddev^2)."""
  stddev: float
  uses_normal = True

  def sample(self, key, shape, dtype):
    return self.stddev * jax.random.normal(key, shape, dtype)

  def from_draws(self, u, n, previous):
    return (n * self.stddev).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Constant(Initializer):
  value: float

  def sample(self, key, shape, dtype):
    return jnp.full(shape, self.value, dtype)

  def from_draws(self, u, n, previous):
    return np.full(u.shape if u is not None else n.shape, self.value, np.float32)


@dataclasses.dataclass(frozen=True)
class Norm(Initializer):
  """Weight norm's g = ||v|| over `axes` (so the layer starts out equal to its plain
  counterpart): `module.param("weight_g", Norm(axes), v)`, v being the parameter created just
  before. Takes no randomness."""
  axes: tuple[int, ...]

  def __call__(self, key, v):
    g = jnp.sqrt(jnp.sum(jnp.square(v), axis=self.axes, keepdims=True))
    return _log(self, g) if _recording_now(key) else g

  def from_draws(self, u, n, previous):
    return np.sqrt(np.sum(np.square(previous, dtype=np.float64), axis=self.axes,
                          keepdims=True)).astype(np.float32)


zeros = Constant(0.0)
ones = Constant(1.0)


def torch_default(fan_in: int) -> Uniform:
  """PyTorch's default for conv and linear weights and biases: U(+-1/sqrt(fan_in)) (its
  kaiming_uniform with a = sqrt(5), and the same bound for biases)."""
  return Uniform(1.0 / math.sqrt(max(fan_in, 1)))


def xavier_uniform(fan_in: int, fan_out: int) -> Uniform:
  return Uniform(math.sqrt(6.0 / (fan_in + fan_out)))


def _recording_now(key) -> bool:
  # Flax also calls an existing parameter's initialiser with a concrete key, to check its shape:
  # only calls inside fast_init's trace (a traced key) create parameters.
  return getattr(_recording, "log", None) is not None and isinstance(key, jax.core.Tracer)


def _log(init: Initializer, value):
  """Remember which initialiser made this (traced) value; keeping the value keeps its id unique."""
  _recording.log[id(value)] = (init, value)
  return value


def _flat(tree, prefix=()):
  for name, value in tree.items():
    if isinstance(value, dict):
      yield from _flat(value, prefix + (name,))
    else:
      yield prefix + (name,), value


def _record_initializers(init_fn):
  """Trace init_fn(key) shape-only; returns [(path, initialiser, shape)] in creation order (the
  order a weight-norm g needs: right after its v)."""
  found = []

  def traced(key):
    variables = init_fn(key)
    log = _recording.log
    for path, value in _flat(variables):
      if id(value) not in log:
        raise RuntimeError(f"fast_init: {'/'.join(path)} was not made by an initialiser of "
                           "ovjax.layers.init")
      found.append((list(log).index(id(value)), path, log[id(value)][0], tuple(value.shape)))
    return variables

  _recording.log = {}
  try:
    jax.eval_shape(traced, jax.random.key(0))
  finally:
    _recording.log = None
  return [entry[1:] for entry in sorted(found, key=lambda e: e[0])]


@functools.partial(jax.jit, static_argnames=("n_uniform", "n_normal"))
def _standard_draws(key, n_uniform: int, n_normal: int):
  ku, kn = jax.random.split(key)
  return jax.random.uniform(ku, (n_uniform,)), jax.random.normal(kn, (n_normal,))


def fast_init(init_fn, key: jax.Array):
  """`init_fn(key) -> variables` (a Flax `Module.init` closure) evaluated shape-only, its
  initialisers recorded, and every parameter drawn from two jitted flat draws seeded by `key`.

  Returns the variables as NumPy float32 arrays, with the same tree as `init_fn(key)`.
  """
  entries = _record_initializers(init_fn)
  n_uniform = sum(math.prod(s) for _, init, s in entries if init.uses_uniform)
  n_normal = sum(math.prod(s) for _, init, s in entries if init.uses_normal)
  uniform, normal = (np.asarray(x) for x in _standard_draws(key, max(n_uniform, 1),
                                                             max(n_normal, 1)))
  out: dict = {}
  iu = in_ = 0
  previous = None
  for path, init, shape in entries:
    size = math.prod(shape)
    u = n = None
    if init.uses_uniform:
      u, iu = uniform[iu:iu + size].reshape(shape), iu + size
    elif init.uses_normal:
      n, in_ = normal[in_:in_ + size].reshape(shape), in_ + size
    else:
      u = np.empty(shape, np.float32)  # Only its shape is read.
    value = init.from_draws(u, n, previous)
    node = out
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
    previous = value
  return out
