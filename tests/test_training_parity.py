"""One whole training step of the reference recipe, with its draws injected, against the golden
intermediates, losses and gradients (base TTS, converter v1 and v2).

Tolerances (the issue's): activations and losses within 1e-4 relative to each tensor's largest
value, gradients within 1e-3; MAS paths and segment starts exactly. Goldens from
$OVJAX_TRAINING_GOLDENS (default ../shared/reference/training_step).
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import reference_path
from ovjax.audio.mel import log_mel
from ovjax.checkpoint import official
from ovjax.config import ConverterConfig
from ovjax.training import objective
from ovjax.training.alignment import log_likelihood_value, maximum_path
from training_goldens import Step, channels_last, step_names, table_for

ACTIVATION_TOL = 1e-4
GRADIENT_TOL = 1e-3


def rel_err(ours, ref):
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape, (ours.shape, ref.shape)
  return float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-30))


@pytest.fixture(scope="module", params=step_names())
def step(request):
  s = Step(request.param)
  s.out = jax.jit(lambda p, b, d: objective.generator_forward(s.recipe, p, b, d))(
      s.params_g, s.batch, s.draws)
  return s


# Golden key -> how ours is laid out ("cl": channels-first there, channels-last here).
ACTIVATIONS = {
    "enc_x": "cl", "m_p": "cl", "logs_p": "cl", "x_mask": "cl", "z": "cl", "m_q": "cl",
    "logs_q": "cl", "y_mask": "cl", "z_p": "cl", "m_p_expanded": "cl", "logs_p_expanded": "cl",
    "z_slice": "cl", "g": "cl", "w": "cl", "logw": "cl", "logw_": "cl", "l_length_sdp": "",
    "y_hat": "wave",
}


def test_forward_intermediates(step):
  checked = 0
  for key, layout in ACTIVATIONS.items():
    if key not in step.golden:
      continue
    ref = step.golden[key]
    ref = channels_last(ref) if layout == "cl" else ref[:, 0] if layout == "wave" else ref
    assert rel_err(step.out[key], ref) < ACTIVATION_TOL, key
    checked += 1
  assert checked >= 12
  # Discrete results exactly: the alignment and the segment positions.
  np.testing.assert_array_equal(np.asarray(step.out["attn"]), step.golden["attn"])
  np.testing.assert_array_equal(np.asarray(step.out["ids_slice"]), step.golden["ids_slice"])


def test_alignment_of_the_golden_prior(step):
  """MAS on the golden's own z_p and prior gives the golden path."""
  g = step.golden
  value = log_likelihood_value(channels_last(g["z_p"]), channels_last(g["m_p"]),
                               channels_last(g["logs_p"]))
  mask = channels_last(g["y_mask"]) * g["x_mask"]
  np.testing.assert_array_equal(np.asarray(maximum_path(value, mask)), g["attn"])


def test_segments_and_mels(step):
  y, y_mel, y_hat_mel = objective.segment_mels(step.recipe, step.out, step.batch)
  assert rel_err(y, step.golden["y_slice"][:, 0]) < ACTIVATION_TOL
  assert rel_err(y_mel, channels_last(step.golden["y_mel"])) < ACTIVATION_TOL
  assert rel_err(y_hat_mel, channels_last(step.golden["y_hat_mel"])) < ACTIVATION_TOL


def _generator_loss(step):
  def loss(params_g):
    out = objective.generator_forward(step.recipe, params_g, step.batch, step.draws)
    return objective.generator_loss(step.recipe, out, step.batch, step.params_d)
  return jax.jit(jax.value_and_grad(loss, has_aux=True))(step.params_g)


def _discriminator_loss(step):
  y = objective.real_segment(step.recipe, step.batch, step.out["ids_slice"])
  fn = lambda p: objective.discriminator_loss(step.recipe, p, y, step.out["y_hat"])
  return jax.jit(jax.value_and_grad(fn, has_aux=True))(step.params_d)


@pytest.fixture(scope="module")
def gradients(step):
  (_, g_terms), g_grads = _generator_loss(step)
  (_, d_terms), d_grads = _discriminator_loss(step)
  return g_terms | d_terms, g_grads, d_grads


def test_losses(step, gradients):
  terms, _, _ = gradients
  names = ["loss_gen", "loss_fm", "loss_mel", "loss_kl", "loss_g_total", "loss_disc"]
  names += ["loss_dur"] if step.kind == "base" else []
  for name in names:
    assert rel_err(terms[name], step.golden[name]) < ACTIVATION_TOL, name
  assert rel_err(terms["loss_disc"], step.golden["loss_d_total"]) < ACTIVATION_TOL
  if step.kind == "base":
    from ovjax.training.losses import duration_loss
    l_dp = duration_loss(step.out["logw"], step.out["w"], step.out["x_mask"])
    assert rel_err(l_dp, step.golden["l_length_dp"]) < ACTIVATION_TOL


def test_gradients(step, gradients):
  """Every golden gradient (reference names and layouts, weight norm as g/v) through the name
  table; relative to each tensor's largest value."""
  _, g_grads, d_grads = gradients
  flat = {"g": official._flatten(g_grads["params"]), "d": official._flatten(d_grads["params"])}
  keys = step.grad_keys()
  assert keys
  worst = {}
  for key in keys:
    which, name = key[len("grad_")], key.split("/", 1)[1]
    found = official.lookup(name, table_for(step.kind, which))
    assert found is not None, f"{key}: not in ovjax's name table"
    path, layout = found
    ours = official.to_official_layout(np.asarray(flat[which][path]), layout)
    ref = step.golden[key]
    if not np.any(ref):  # e.g. v2's posterior cond layer: its input is all zeros.
      assert not np.any(ours), key
      continue
    worst[key] = rel_err(ours, ref)
  assert max(worst.values()) < GRADIENT_TOL, worst


# -- the component goldens of vits_training/ -------------------------------------------------


@pytest.fixture(scope="module")
def vits_training():
  return dict(np.load(reference_path("vits_training", "golden.npz")))


def test_maximum_path(vits_training):
  g = vits_training
  path = maximum_path(jnp.asarray(g["mas_value"]), jnp.asarray(g["mas_mask"]))
  np.testing.assert_array_equal(np.asarray(path), g["mas_path"])
  p = np.asarray(path)
  for b, (frames, tokens) in enumerate(g["mas_lengths"]):
    assert np.all(p[b, :frames].sum(1) == 1) and np.all(p[b, frames:] == 0)
    assert np.all(p[b, :frames, :tokens].sum(0) >= 1)  # Every token used.
    steps = np.diff(p[b, :frames, :tokens].argmax(1))
    assert set(np.unique(steps)) <= {0, 1}  # Monotone, one token at a time.


def test_value_and_path(vits_training):
  g = vits_training
  value = log_likelihood_value(channels_last(g["nll_z_p"]), channels_last(g["nll_m_p"]),
                               channels_last(g["nll_logs_p"]))
  assert rel_err(value, g["nll_value"]) < ACTIVATION_TOL
  mask = channels_last(g["nll_y_mask"]) * g["nll_x_mask"]
  np.testing.assert_array_equal(np.asarray(maximum_path(value, mask)), g["nll_path"])


def test_log_mel(vits_training):
  audio = vits_training["mel_audio"][None]
  mel = log_mel(jnp.asarray(audio), jnp.array([audio.shape[1]]), ConverterConfig())
  assert np.max(np.abs(np.asarray(mel)[0].T - vits_training["mel"])) < 1e-4


def test_full_size_discriminator_layout():
  """width=1 is the 46.7 M-parameter MultiPeriodDiscriminator, key for key and shape for shape."""
  manifest = json.loads(reference_path("training_step",
                                       "discriminator_full_size_manifest.json").read_text())
  recipe_d = objective.Recipe("converter", ConverterConfig(), discriminator_width=1.0)
  shapes = jax.eval_shape(lambda k: recipe_d.discriminator().init(k, jnp.zeros((1, 8192))),
                          jax.random.key(0))
  ours = {k: tuple(v.shape) for k, v in official._flatten(shapes["params"]).items()}
  mapped = {}
  for key, shape in manifest.items():
    path, layout = official.lookup(key, official.DISCRIMINATOR_TABLE)
    mapped[path] = official.from_official_layout(np.zeros(shape, np.float32), layout).shape
  assert mapped == ours
  assert 46.5e6 < sum(np.prod(s) for s in ours.values()) < 46.9e6
