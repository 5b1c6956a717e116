"""Duration predictors (SDP, DP) and the rational-quadratic spline against the reference."""
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ovjax.checkpoint.official import BASE_TABLE, expected_shapes, map_state_dict
from ovjax.layers.duration import (ConvFlow, DurationPredictor, ElementwiseAffine,
                                   StochasticDurationPredictor)
from ovjax.layers.spline import rational_quadratic_spline

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
MODEL_DIR = REFERENCE / "openvoice" / "base_v1_small"
TOL = 1e-4
SDP_RATIO = 0.2


def err(a, b):
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(a - b)))


def randomise(params, seed, scale=0.5):
  """N(0, scale^2) parameters shaped like `params` (arrays or eval_shape structs): the
  reference zero-initialises flow projections, which would make flow tests vacuous."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: (scale * rng.standard_normal(l.shape)).astype(np.float32), params)


@pytest.fixture(scope="module")
def base():
  """(sdp, dp, sdp params, dp params, emb_g, golden) from the small reference base model."""
  if not MODEL_DIR.exists():
    raise FileNotFoundError(f"reference data missing: {MODEL_DIR} (clone the repo beside shared/)")
  state = dict(np.load(MODEL_DIR / "state_dict.npz"))
  golden = dict(np.load(MODEL_DIR / "golden.npz"))
  hidden, gin = state["sdp.pre.weight"].shape[0], state["emb_g.weight"].shape[1]
  dp_filter = state["dp.conv_1.weight"].shape[0]  # 256 in the full model, not filter_channels
  sdp = StochasticDurationPredictor(hidden, hidden, 3, 0.5, 4, gin_channels=gin)
  dp = DurationPredictor(hidden, dp_filter, 3, 0.5, gin_channels=gin)

  x, mask, g = jnp.zeros((1, 4, hidden)), jnp.ones((1, 4, 1)), jnp.zeros((1, 1, gin))
  key = jax.random.key(0)
  shapes = {}
  for name, module, args in (("sdp", sdp, dict(w=mask, g=g, key=key)), ("dp", dp, dict(g=g))):
    abstract = jax.eval_shape(lambda m=module, a=args: m.init(key, x, mask, **a))
    shapes.update({f"{name}/{k}": v for k, v in expected_shapes(abstract).items()})
  rules = [rule for rule in BASE_TABLE if rule[0].startswith(("sdp", "dp"))]
  ours = {k: v for k, v in state.items() if k.startswith(("sdp.", "dp."))}
  tree = map_state_dict(ours, rules, shapes, source="base_v1_small")["params"]
  return sdp, dp, {"params": tree["sdp"]}, {"params": tree["dp"]}, state["emb_g.weight"], golden


def inputs_of(base, n):
  *_, emb_g, golden = base
  x = jnp.asarray(golden[f"s{n}_enc_x"].T[None])
  g = jnp.asarray(emb_g[int(golden[f"s{n}_sid"])][None, None])
  return x, jnp.ones((*x.shape[:2], 1)), g


@partial(jax.jit, static_argnums=(0, 1))
def _predict(sdp, dp, sdp_params, dp_params, x, mask, g, noise):
  logw_sdp = sdp.apply(sdp_params, x, mask, g=g, reverse=True, noise_scale=1.0, noise=noise)
  return logw_sdp, dp.apply(dp_params, x, mask, g=g)


def predict(base, x, mask, g, noise):
  """(logw_sdp, logw_dp) [B, T, 1]; `noise` is the SDP's z (already scaled)."""
  sdp, dp, sdp_params, dp_params, *_ = base
  return _predict(sdp, dp, sdp_params, dp_params, x, mask, g, noise)


# --- parity with the reference ---------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1])
def test_logw_parity(base, n):
  golden = base[-1]
  x, mask, g = inputs_of(base, n)
  logw_sdp, logw_dp = predict(base, x, mask, g, jnp.zeros((*x.shape[:2], 2)))  # noise_scale_w 0
  e_sdp = err(logw_sdp[0].T, golden[f"s{n}_logw_sdp"])
  e_dp = err(logw_dp[0].T, golden[f"s{n}_logw_dp"])
  print(f"s{n}: max |logw_sdp - ref| = {e_sdp:.2e}, max |logw_dp - ref| = {e_dp:.2e}")
  assert e_sdp < TOL and e_dp < TOL

  logw = logw_sdp * SDP_RATIO + logw_dp * (1 - SDP_RATIO)
  durations = np.asarray(jnp.ceil(jnp.exp(logw) * mask))[0, :, 0]
  np.testing.assert_array_equal(durations, golden[f"s{n}_durations"])


def test_inference_key_and_noise_scale(base):
  sdp, _, params, *_ = base
  x, mask, g = inputs_of(base, 0)
  run = jax.jit(lambda key, scale: sdp.apply(params, x, mask, g=g, reverse=True,
                                             noise_scale=scale, key=key))
  k1, k2 = jax.random.key(1), jax.random.key(2)
  quiet, noisy = run(k1, 0.0), run(k1, 0.8)
  assert err(quiet, predict(base, x, mask, g, jnp.zeros((*x.shape[:2], 2)))[0]) < 1e-5
  assert err(noisy, quiet) > 1e-2
  np.testing.assert_array_equal(noisy, run(k1, 0.8))  # deterministic given the key
  assert err(run(k2, 0.8), noisy) > 1e-2
  # Without a key the draw comes from the module's "noise" RNG stream.
  stream = jax.jit(lambda key: sdp.apply(params, x, mask, g=g, reverse=True, noise_scale=0.8,
                                         rngs={"noise": key}))
  np.testing.assert_array_equal(stream(k1), stream(k1))
  assert err(stream(k1), quiet) > 1e-2


def padded_pair(base, key):
  """Sentences s0 and s1 padded into one batch (garbage in the padding), with per-item noise."""
  items = [inputs_of(base, n) for n in (0, 1)]
  t = max(x.shape[1] for x, _, _ in items) + 9  # both items padded
  k_pad, k_noise, k_w = jax.random.split(key, 3)
  x = jax.random.normal(k_pad, (2, t, items[0][0].shape[-1]))  # padding must not leak
  mask = jnp.zeros((2, t, 1))
  for i, (xi, mi, _) in enumerate(items):
    x = x.at[i, :xi.shape[1]].set(xi[0])
    mask = mask.at[i, :xi.shape[1]].set(1.0)
  g = jnp.concatenate([gi for _, _, gi in items])
  noise = jax.random.normal(k_noise, (2, t, 2))
  w = jax.random.randint(k_w, (2, t, 1), 1, 8).astype(jnp.float32)
  return items, x, mask, g, noise, w


def test_inference_padded_batch(base):
  items, x, mask, g, noise, _ = padded_pair(base, jax.random.key(3))
  logw_sdp, logw_dp = predict(base, x, mask, g, noise * 0.6)
  for i, (xi, mi, gi) in enumerate(items):
    t = xi.shape[1]
    one_sdp, one_dp = predict(base, xi, mi, gi, noise[i:i + 1, :t] * 0.6)
    assert err(logw_sdp[i:i + 1, :t], one_sdp) < TOL
    assert err(logw_dp[i:i + 1, :t], one_dp) < TOL
    assert not np.any(np.asarray(logw_sdp[i, t:])) and not np.any(np.asarray(logw_dp[i, t:]))


def test_training_nll_padded_batch(base):
  sdp, _, params, *_ = base
  items, x, mask, g, noise, w = padded_pair(base, jax.random.key(4))
  w = w * mask + 3.0 * (1 - mask)  # durations in the padding must not count either
  nll_fn = jax.jit(lambda p, x, m, w, g, e: sdp.apply(p, x, m, w=w, g=g, noise=e))
  nll32 = nll_fn(params, x, mask, w, g, noise)
  assert nll32.shape == (2,) and np.all(np.isfinite(nll32))
  # Padding is compared in float64: with the reference's random weights some spline bins are so
  # steep that float32 rounding alone (it changes with the batch shape's fusion) moves the
  # posterior log-determinant by up to ~0.05 out of ~840, which would hide or fake a leak.
  with jax.enable_x64(True):
    f64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
    params, x, mask, w, g, noise = f64((params, x, mask, w, g, noise))
    nll = nll_fn(params, x, mask, w, g, noise)
    np.testing.assert_allclose(nll32, nll, rtol=1e-3)
    for i, (xi, mi, gi) in enumerate(items):
      t = xi.shape[1]
      one = nll_fn(params, *f64((xi, mi, w[i:i + 1, :t], gi, noise[i:i + 1, :t])))
      print(f"item {i}: NLL {float(one[0]):.3f}, batched - alone {err(nll[i:i + 1], one):.1e}")
      assert err(nll[i:i + 1], one) < TOL


# --- the spline --------------------------------------------------------------------------------

spline = jax.jit(rational_quadratic_spline, static_argnames="inverse")


def spline_case(key, n=4000, bins=10, scale=2.0):
  """Inputs in [-7, 7] (B = 5) and N(0, scale^2) spline parameters; scale 2 gives extreme bins."""
  kx, kw, kh, kd = jax.random.split(key, 4)
  x = jax.random.uniform(kx, (n,), minval=-7.0, maxval=7.0)
  x = x.at[:4].set(jnp.array([-5.0, 5.0, -5.5, 6.5]))  # the bounds themselves and the tails
  widths = scale * jax.random.normal(kw, (n, bins))
  heights = scale * jax.random.normal(kh, (n, bins))
  derivatives = scale * jax.random.normal(kd, (n, bins - 1))
  return x, widths, heights, derivatives


def test_spline_round_trip_and_logdet():
  # The algebra, in float64 and with wide parameters (very flat and very steep bins).
  with jax.enable_x64(True):
    x, w, h, d = jax.tree.map(lambda a: a.astype(jnp.float64), spline_case(jax.random.key(0)))
    y, ld_fwd = spline(x, w, h, d, inverse=False)
    x_back, ld_inv = spline(y, w, h, d, inverse=True)
    assert err(x_back, x) < 1e-8 and err(ld_inv, -ld_fwd) < 1e-8

  # float32: within 1e-5 in output units. Where a bin is nearly flat no inverse can do better
  # than ulp(y) / slope in x, and with scale 2 the reference's own float32 quadratic solve loses
  # ~1e-5 even at slope 1, so moderate (still far from identity) parameters here.
  x, w, h, d = spline_case(jax.random.key(0), scale=1.0)
  y, ld_fwd = spline(x, w, h, d, inverse=False)
  x_back, ld_inv = spline(y, w, h, d, inverse=True)
  slope = np.exp(np.asarray(ld_fwd))
  assert np.max(np.abs(np.asarray(x_back - x)) * np.minimum(slope, 1.0)) < 1e-5
  outside = np.abs(np.asarray(x)) > 5.0
  assert outside.sum() > 100 and (~outside).sum() > 100
  np.testing.assert_array_equal(np.asarray(y)[outside], np.asarray(x)[outside])
  np.testing.assert_array_equal(np.asarray(x_back)[outside], np.asarray(x)[outside])
  assert not np.any(np.asarray(ld_fwd)[outside]) and not np.any(np.asarray(ld_inv)[outside])


def test_spline_logdet_matches_finite_difference():
  with jax.enable_x64(True):
    x, w, h, d = jax.tree.map(lambda a: a.astype(jnp.float64), spline_case(jax.random.key(1)))
    x = jnp.clip(x, -4.99, 4.99)  # central differences across the tail joint are one-sided
    eps = 1e-6
    for inverse in (False, True):
      f = lambda v: spline(v, w, h, d, inverse=inverse)
      _, logdet = f(x)
      slope = (f(x + eps)[0] - f(x - eps)[0]) / (2 * eps)
      rel = np.abs(np.exp(np.asarray(logdet)) / np.asarray(slope) - 1)
      assert rel.max() < 1e-3, (inverse, rel.max())


def test_spline_gradients_finite():
  # The unused branch of each jnp.where must not leak NaN/inf into gradients (tails, bounds).
  x, w, h, d = spline_case(jax.random.key(3), n=256)
  for inverse in (False, True):
    loss = lambda *a: jnp.sum(sum(spline(*a, inverse=inverse)))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(x, w, h, d)
    assert all(np.all(np.isfinite(np.asarray(gr))) for gr in grads)
    assert np.all(np.asarray(grads[0])[np.abs(np.asarray(x)) > 5.0] == 1.0)  # identity tails


def test_spline_monotone_inside():
  _, w, h, d = spline_case(jax.random.key(2), n=64)
  x = jnp.broadcast_to(jnp.linspace(-5.0, 5.0, 2001), (64, 2001))
  expand = lambda a: jnp.broadcast_to(a[:, None], (64, 2001, a.shape[-1]))
  y, _ = spline(x, expand(w), expand(h), expand(d))
  assert np.all(np.diff(np.asarray(y), axis=-1) >= 0)
  np.testing.assert_allclose(np.asarray(y)[:, [0, -1]], [[-5.0, 5.0]] * 64, atol=1e-5)


# --- flows: forward then reverse is the identity -----------------------------------------------

def flow_inputs(key, b=2, t=33):
  kx, km = jax.random.split(key)
  x = 2.5 * jax.random.normal(kx, (b, t, 2))  # some samples land in the linear tails
  mask = jnp.ones((b, t, 1)).at[1, 20:].set(0.0)
  return x * mask, mask


def test_elementwise_affine_round_trip():
  x, mask = flow_inputs(jax.random.key(0))
  flow = ElementwiseAffine(2)
  params = randomise(jax.eval_shape(flow.init, jax.random.key(1), x, mask), 2)
  y, ld = flow.apply(params, x, mask)
  back, ld_inv = flow.apply(params, y, mask, reverse=True)
  assert err(y, x) > 1e-2
  assert err(back, x) < 1e-5 and err(ld_inv, -ld) < 1e-5
  x_rev, _ = flow.apply(params, x, mask, reverse=True)
  assert err(flow.apply(params, x_rev, mask)[0], x) < 1e-5
  logs = params["params"]["logs"]
  np.testing.assert_allclose(ld, jnp.sum(mask, axis=(1, 2)) * jnp.sum(logs), rtol=1e-5)


def test_conv_flow_round_trip():
  x, mask = flow_inputs(jax.random.key(3))
  g = jax.random.normal(jax.random.key(4), (2, 33, 16)) * mask
  flow = ConvFlow(2, 16, 3, 3)
  # Moderate weights: much larger ones make bins so steep or flat that float32 rounding alone
  # (ulp times the slope) exceeds 1e-5; the spline's algebra is tested in float64 above.
  params = randomise(jax.eval_shape(flow.init, jax.random.key(5), x, mask, g), 6, scale=0.2)
  apply = jax.jit(flow.apply, static_argnames="reverse")
  y, ld = apply(params, x, mask, g)
  back, ld_inv = apply(params, y, mask, g, reverse=True)
  assert err(y, x) > 1e-2 and float(jnp.max(jnp.abs(ld))) > 1e-2
  assert err(back, x) < 1e-5 and err(ld_inv, -ld) < 1e-4
  # And the other way round: forward(reverse(y)) == y.
  x_rev, ld_rev = apply(params, x, mask, g, reverse=True)
  again, ld_again = apply(params, x_rev, mask, g)
  assert err(again, x) < 1e-5 and err(ld_again, -ld_rev) < 1e-4
