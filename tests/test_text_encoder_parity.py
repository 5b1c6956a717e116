"""Text encoder (enc_p) against the reference PyTorch OpenVoice's numbers, plus its invariants."""
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ovjax.checkpoint.official import BASE_TABLE, map_state_dict
from ovjax.layers.attention import RelativeMultiHeadAttention
from ovjax.layers.text_encoder import TextEncoder

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
MODEL_DIR = REFERENCE / "openvoice" / "base_v1_small"
TOL = 1e-4


def err(a, b):
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(a - b)))


def _flat_shapes(tree, prefix):
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}"
    out.update(_flat_shapes(v, path) if isinstance(v, dict) else {path: tuple(v.shape)})
  return out


@pytest.fixture(scope="module")
def encoder():
  """(model, params) with the official enc_p weights mapped through BASE_TABLE."""
  config = json.loads((MODEL_DIR / "config.json").read_text())
  mc = config["model"]
  model = TextEncoder(len(config["symbols"]), mc["inter_channels"], mc["hidden_channels"],
                      mc["filter_channels"], mc["n_heads"], mc["n_layers"], mc["kernel_size"],
                      mc["p_dropout"])
  ids, lengths = jnp.zeros((1, 5), jnp.int32), jnp.array([5])
  abstract = jax.eval_shape(model.init, jax.random.key(0), ids, lengths)
  shapes = _flat_shapes(abstract["params"], "enc_p")
  state = {k: v for k, v in np.load(MODEL_DIR / "state_dict.npz").items() if k.startswith("enc_p.")}
  rules = [rule for rule in BASE_TABLE if rule[0].startswith("enc_p")]
  tree = map_state_dict(state, rules, shapes, source="base_v1_small")
  return model, {"params": tree["params"]["enc_p"]}


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(MODEL_DIR / "golden.npz"))


def run_one(model, params, ids):
  ids = jnp.asarray(ids, jnp.int32)[None]
  return model.apply(params, ids, jnp.array([ids.shape[1]]))


@pytest.mark.parametrize("which", ["s0", "s1"])
def test_golden(encoder, golden, which):
  model, params = encoder
  h, m_p, logs_p, mask = run_one(model, params, golden[f"{which}_ids"])
  assert bool(jnp.all(mask == 1))
  errors = {name: err(ours[0].T, golden[f"{which}_{name}"])
            for name, ours in (("enc_x", h), ("m_p", m_p), ("logs_p", logs_p))}
  print(which, errors)
  assert max(errors.values()) < TOL, errors


def test_padded_batch_matches_items(encoder, golden):
  model, params = encoder
  seqs = [golden["s0_ids"], golden["s1_ids"]]
  t = max(len(s) for s in seqs)
  ids = np.zeros((len(seqs), t), np.int32)
  for b, s in enumerate(seqs):
    ids[b, :len(s)] = s
  lengths = jnp.array([len(s) for s in seqs])
  batched = model.apply(params, jnp.asarray(ids), lengths)
  for b, s in enumerate(seqs):
    single = run_one(model, params, s)
    n = len(s)
    for ours, ref in zip(batched[:3], single[:3]):
      assert err(ours[b, :n], ref[0]) < 1e-5
      assert bool(jnp.all(ours[b, n:] == 0))  # padding frames are zero
    assert bool(jnp.all(batched[3][b, :, 0] == (jnp.arange(t) < n)))


def naive_attention(params, x, mask, n_heads, window):
  """The formula, one (batch, head, i, j) at a time, in float64 numpy."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  conv = lambda name, y: y @ p[name]["kernel"][0] + p[name]["bias"]
  x = np.asarray(x, np.float64)
  q, k, v = conv("conv_q", x), conv("conv_k", x), conv("conv_v", x)
  e_k, e_v = p["emb_rel_k"][0], p["emb_rel_v"][0]
  b, t, c = x.shape
  d = c // n_heads
  out = np.zeros((b, t, c))
  for bi in range(b):
    for h in range(n_heads):
      sl = slice(h * d, (h + 1) * d)
      for i in range(t):
        qi = q[bi, i, sl] / math.sqrt(d)
        scores = np.zeros(t)
        for j in range(t):
          scores[j] = qi @ k[bi, j, sl]
          if abs(j - i) <= window:
            scores[j] += qi @ e_k[j - i + window]
          if mask[bi, i] * mask[bi, j] == 0:
            scores[j] = -1e4
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        for j in range(t):
          out[bi, i, sl] += probs[j] * v[bi, j, sl]
          if abs(j - i) <= window:
            out[bi, i, sl] += probs[j] * e_v[j - i + window]
  return conv("conv_o", out)


@pytest.mark.parametrize("t", [1, 3, 12])
def test_attention_matches_naive_loop(t):
  """Random weights, T below and above the window (4, table size 9); item 1 is padded."""
  c, heads, window = 8, 2, 4
  attn = RelativeMultiHeadAttention(c, c, heads, window_size=window)
  x = jax.random.normal(jax.random.key(1), (2, t, c))
  lengths = np.array([t, max(t - 1, 1)])
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
  attn_mask = jnp.asarray(mask[:, :, None] * mask[:, None, :])
  params = attn.init(jax.random.key(2), x, attn_mask)
  # Non-zero biases, so a bias slip cannot hide.
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(3), a.shape), params)
  ours = attn.apply(params, x, attn_mask)
  ref = naive_attention(params["params"], x, mask, heads, window)
  assert err(ours, ref) < 1e-5


def test_dropout(encoder, golden):
  model, params = encoder
  ids = jnp.asarray(golden["s0_ids"], jnp.int32)[None]
  lengths = jnp.array([ids.shape[1]])
  apply = jax.jit(model.apply, static_argnames="deterministic")
  eval_a = apply(params, ids, lengths)[0]
  eval_b = apply(params, ids, lengths)[0]
  assert bool(jnp.all(eval_a == eval_b))
  train_a = apply(params, ids, lengths, deterministic=False, rngs={"dropout": jax.random.key(0)})[0]
  train_b = apply(params, ids, lengths, deterministic=False, rngs={"dropout": jax.random.key(1)})[0]
  assert err(train_a, eval_a) > 1e-3
  assert err(train_a, train_b) > 1e-3
  assert bool(jnp.all(jnp.isfinite(train_a)))
