"""`init`: the parameter tree comes from the config alone, with the reference's initial values."""
import json

import jax
import numpy as np
import pytest

from conftest import reference_path
from ovjax.config import base_tts_config_from_official, converter_config_from_official
from ovjax.layers import init as init_lib
from ovjax.models import base_tts, converter


def _config(name):
  cfg = json.loads(reference_path("openvoice", name, "config.json").read_text())
  parse = base_tts_config_from_official if name.startswith("base") else converter_config_from_official
  return parse(cfg)


def _flat(tree, prefix=""):
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else k
    if isinstance(v, dict):
      yield from _flat(v, path)
    else:
      yield path, v


@pytest.fixture(scope="module")
def trees():
  out = {}
  for name, model in (("converter_v2_small", converter), ("converter_v1_small", converter),
                      ("base_v1_small", base_tts)):
    config = _config(name)
    out[name] = (model, config, dict(_flat(model.init_params(config, jax.random.key(0))["params"])))
  return out


@pytest.mark.parametrize("name", ["converter_v2_small", "converter_v1_small", "base_v1_small"])
def test_tree_is_the_official_layout(trees, name):
  """Every official key of the reference checkpoint maps onto exactly the init'd tree (v2's
  zero_g decoder included: its `cond` layer exists because the config has gin_channels)."""
  from ovjax.checkpoint.store import load_checkpoint
  model, config, params = trees[name]
  _, loaded = load_checkpoint(reference_path("openvoice", name),
                              "base_tts" if name.startswith("base") else "converter")
  loaded = dict(_flat(loaded["params"]))
  assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in loaded.items()}
  assert "dec/cond/kernel" in params and "enc_q/enc/cond_layer/weight_v" in params
  assert all(v.dtype == np.float32 for v in params.values())


def _uniform_bound_ok(x, bound):
  # Inside the bound, and filling it: the largest of n uniform draws is within bound/n of it.
  return np.max(np.abs(x)) <= bound * (1 + 1e-6) and np.max(np.abs(x)) > bound * (1 - 20 / x.size)


def test_reference_initial_values(trees):
  _, config, p = trees["base_v1_small"]
  h = config.vits.hidden_channels
  # PyTorch's default conv init: U(+-1/sqrt(fan_in)), fan_in = in_channels * kernel_size.
  v = p["enc_q/enc/in_layers_0/weight_v"]  # [5, h, 2h]
  assert _uniform_bound_ok(v, 1 / np.sqrt(5 * h))
  assert _uniform_bound_ok(p["enc_q/enc/in_layers_0/bias"], 1 / np.sqrt(5 * h))
  # Weight norm starts at g = ||v|| (per output channel), so w == v.
  g = p["enc_q/enc/in_layers_0/weight_g"]
  np.testing.assert_allclose(g, np.sqrt(np.sum(v**2, axis=(0, 1), keepdims=True)), rtol=1e-6)
  # HiFi-GAN's N(0, 0.01) for the upsampling and resblock kernels.
  for key in ("dec/ups_0/weight_v", "dec/resblocks_0/convs1_0/weight_v"):
    assert abs(np.std(p[key]) - 0.01) < 1e-3 and abs(np.mean(p[key])) < 1e-3
  # Transposed conv: PyTorch's fan-in is out_channels * kernel_size (its weight's dim 1).
  k, _, out = p["dec/ups_0/weight_v"].shape
  assert _uniform_bound_ok(p["dec/ups_0/bias"], 1 / np.sqrt(k * out))
  # Zero-initialised projections: each flow and spline flow starts as the identity.
  for key in ("flow/coupling_0/post/kernel", "flow/coupling_0/post/bias", "sdp/flows_1/proj/kernel",
              "sdp/flows_1/proj/bias", "sdp/flows_0/m", "sdp/flows_0/logs"):
    assert not np.any(p[key]), key
  assert np.all(p["enc_p/encoder/norm_layers_1_0/gamma"] == 1)
  assert not np.any(p["enc_p/encoder/norm_layers_1_0/beta"])
  # Embeddings: the text table N(0, 1/hidden), the speaker table N(0, 1) (nn.Embedding).
  assert abs(np.std(p["enc_p/emb/embedding"]) * np.sqrt(h) - 1) < 0.1
  assert abs(np.std(p["emb_g/embedding"]) - 1) < 0.15
  # Attention q/k/v: xavier uniform.
  assert _uniform_bound_ok(p["enc_p/encoder/attn_layers_0/conv_q/kernel"], np.sqrt(6 / (2 * h)))


def test_reference_encoder_initial_values(trees):
  _, config, p = trees["converter_v2_small"]
  assert _uniform_bound_ok(p["ref_enc/gru/weight_hh"], 1 / np.sqrt(128))
  assert _uniform_bound_ok(p["ref_enc/proj/kernel"], 1 / np.sqrt(128))
  assert np.all(p["ref_enc/layernorm/scale"] == 1)


def test_deterministic_from_the_key(trees):
  model, config, p = trees["converter_v2_small"]
  again = dict(_flat(model.init_params(config, jax.random.key(0))["params"]))
  other = dict(_flat(model.init_params(config, jax.random.key(1))["params"]))
  assert all(np.array_equal(p[k], again[k]) for k in p)
  assert not np.array_equal(p["dec/conv_pre/kernel"], other["dec/conv_pre/kernel"])
  # Different layers get different draws.
  assert not np.array_equal(p["flow/coupling_0/pre/kernel"], p["flow/coupling_1/pre/kernel"])


def test_flax_init_uses_the_same_initialisers():
  """The same modules through Flax's own per-parameter keys: same tree, same distributions (a
  decoder stage and a reference encoder: Flax's path compiles one RNG program per parameter)."""
  import flax.linen as nn
  from ovjax.layers.generator import ResBlock1
  from ovjax.layers.reference_encoder import ReferenceEncoder

  class Small(nn.Module):
    @nn.compact
    def __call__(self, x, spec):
      return ResBlock1(64, 3, (1, 3), name="res")(x, np.ones((1, 8, 1), np.float32)), \
          ReferenceEncoder(16, filters=(8, 8), name="ref")(spec, np.array([8]))

  args = (np.zeros((1, 8, 64), np.float32), np.zeros((1, 8, 33), np.float32))
  init_fn = lambda k: Small().init(k, *args)
  flax_tree = dict(_flat(jax.jit(init_fn)(jax.random.key(3))["params"]))
  fast = dict(_flat(init_lib.fast_init(init_fn, jax.random.key(3))["params"]))
  assert {k: v.shape for k, v in flax_tree.items()} == {k: v.shape for k, v in fast.items()}
  for key in ("res/convs1_0/weight_v", "ref/gru/weight_ih", "ref/proj/kernel"):
    assert abs(np.std(flax_tree[key]) / np.std(fast[key]) - 1) < 0.05, key
  for tree in (flax_tree, fast):
    np.testing.assert_allclose(tree["res/convs1_0/weight_g"],
                               np.sqrt(np.sum(tree["res/convs1_0/weight_v"]**2, axis=(0, 1),
                                              keepdims=True)), rtol=1e-5)


def test_one_compiled_draw_whatever_the_model(trees):
  """Flax's per-parameter keys compile one RNG program per parameter (minutes at full size on a
  CPU); fast_init compiles one flat draw per model size."""
  before = init_lib._standard_draws._cache_size()
  model, config, _ = trees["converter_v1_small"]
  model.init_params(config, jax.random.key(5))
  assert init_lib._standard_draws._cache_size() == before  # Same sizes: nothing new compiled.


def test_an_unknown_initialiser_is_refused():
  import flax.linen as nn

  class Stray(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3, kernel_init=nn.initializers.lecun_normal())(x)

  with pytest.raises(RuntimeError, match="Dense_0/kernel"):
    init_lib.fast_init(lambda k: Stray().init(k, np.zeros((1, 2), np.float32)), jax.random.key(0))
