"""Each converter layer against the reference PyTorch OpenVoice's numbers (float32, 1e-4)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ovjax.layers import time_tiling
from ovjax.layers.conv import fold_weight_norm
from ovjax.layers.posterior_encoder import sample_posterior
from ovjax.models import converter as cv
from ovjax.models.converter import ToneColorConverterModel as Model

TOL = 1e-4
MODELS = ("converter_v2_small", "converter_v1_small")


def err(a, b):
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(a - b)))


@pytest.fixture(params=MODELS)
def case(request, converters):
  config, params, golden = converters[request.param]
  return config, params, golden


def spec_of(golden, which):
  spec = golden[f"{which}_spec"].T[None]  # reference [513, T] -> ours [1, T, 513]
  return jnp.asarray(spec), jnp.array([spec.shape[1]])


def se_of(golden, which):
  return jnp.asarray(golden[f"{which}_se"][:, :, 0])  # [1, gin, 1] -> [1, gin]


def test_config_version(converters):
  assert converters["converter_v2_small"][0].zero_g and converters["converter_v2_small"][0].version == "v2"
  assert not converters["converter_v1_small"][0].zero_g


@pytest.mark.parametrize("which", ["src", "tgt"])
def test_spectrogram(case, which):
  config, _, golden = case
  audio = golden[f"{which}_audio"]
  padded = np.zeros((1, cv.input_width(len(audio) // 256, config)), np.float32)
  padded[0, :len(audio)] = audio
  spec, frames = cv.audio_to_spec(jnp.asarray(padded), jnp.array([len(audio)]), config)
  assert int(frames[0]) == golden[f"{which}_spec"].shape[1] == len(audio) // 256
  assert err(spec[0].T, golden[f"{which}_spec"]) < TOL


@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("which", ["src", "tgt"])
def test_reference_encoder(case, which, folded):
  config, params, golden = case
  params = fold_weight_norm(params) if folded else params
  spec, lengths = spec_of(golden, which)
  se = Model(config).apply(params, spec, lengths, method=Model.extract_se)
  assert err(se, se_of(golden, which)) < TOL


def test_posterior_encoder(case):
  config, params, golden = case
  spec, lengths = spec_of(golden, "src")
  mask = jnp.ones((1, spec.shape[1], 1))
  m, logs = Model(config).apply(params, spec, mask, se_of(golden, "src")[:, None, :],
                                method=Model.posterior)
  assert err(m[0].T, golden["enc_q_m"]) < TOL
  assert err(logs[0].T, golden["enc_q_logs"]) < TOL


def test_flow_forward_and_inverse(case):
  config, params, golden = case
  model = Model(config)
  z = jnp.asarray(golden["vc_z"].T[None])
  mask = jnp.ones((1, z.shape[1], 1))
  flow = lambda x, se, reverse: model.apply(
      params, x, mask, se[:, None, :], reverse=reverse,
      method=lambda m, *a, **k: m.flow(*a, **k))[0]
  z_p = flow(z, se_of(golden, "src"), False)
  assert err(z_p[0].T, golden["vc_z_p"]) < TOL
  z_hat = flow(jnp.asarray(golden["vc_z_p"].T[None]), se_of(golden, "tgt"), True)
  assert err(z_hat[0].T, golden["vc_z_hat"]) < TOL


def test_flow_inverse_of_forward_is_identity(case):
  """With the real (randomised, non-zero) coupling weights, on random latents and ragged masks."""
  config, params, _ = case
  model = Model(config)
  x = jax.random.normal(jax.random.key(0), (2, 50, config.inter_channels))
  mask = (jnp.arange(50)[None, :, None] < jnp.array([50, 31])[:, None, None]).astype(jnp.float32)
  x = x * mask
  g = jax.random.normal(jax.random.key(1), (2, 1, config.gin_channels))
  flow = lambda v, reverse: model.apply(params, v, mask, g, reverse=reverse,
                                        method=lambda m, *a, **k: m.flow(*a, **k))[0]
  y = flow(x, False)
  assert err(y, x) > 1e-2  # The flow really moves things: the identity check is not vacuous.
  assert err(flow(y, True), x) < 1e-5


def test_decoder(case):
  config, params, golden = case
  z = jnp.asarray(golden["dec_in"].T[None])
  # v2 (zero_g) decodes unconditioned here; v1 with the target embedding.
  g = None if config.zero_g else se_of(golden, "tgt")[:, None, :]
  out = Model(config).apply(params, z, jnp.ones((1, z.shape[1], 1)), g, method=Model.decode)
  assert err(out[0], golden["dec_out"]) < TOL


def test_decoder_in_time_tiles(case, monkeypatch):
  """The decoder with its narrow levels computed in cache-sized time tiles (forced here with a
  small tile; on CPU long inputs get it by default) still matches the reference."""
  config, params, golden = case
  tiled = []
  monkeypatch.setattr(time_tiling, "TILE_BYTES", 16384)  # The 4- and 8-channel levels, 5 tiles.
  whole_fn = time_tiling.tiled
  monkeypatch.setattr(time_tiling, "tiled", lambda fn, x, *a: tiled.append(x.shape) or
                      whole_fn(fn, x, *a))
  z = jnp.asarray(golden["dec_in"].T[None])
  g = None if config.zero_g else se_of(golden, "tgt")[:, None, :]
  out = Model(config).apply(params, z, jnp.ones((1, z.shape[1], 1)), g, method=Model.decode)
  assert err(out[0], golden["dec_out"]) < TOL
  assert len(tiled) >= 2 or jax.default_backend() != "cpu", tiled


@pytest.mark.parametrize("folded", [False, True])
def test_voice_conversion_tau0(case, folded):
  config, params, golden = case
  params = fold_weight_norm(params) if folded else params
  spec, lengths = spec_of(golden, "src")
  noise = jax.random.normal(jax.random.key(3), (1, spec.shape[1], config.inter_channels))
  audio, z, z_p, z_hat, m, logs = Model(config).apply(
      params, spec, lengths, se_of(golden, "src"), se_of(golden, "tgt"), 0.0, noise,
      method=Model.voice_conversion)
  assert err(z[0].T, golden["vc_z"]) < TOL
  assert err(z_p[0].T, golden["vc_z_p"]) < TOL
  assert err(z_hat[0].T, golden["vc_z_hat"]) < TOL
  assert err(audio[0], golden["vc_audio"]) < TOL


def test_end_to_end_from_audio(case):
  """The jitted entry point: waveform in, waveform out, spectrogram and embeddings included."""
  config, params, golden = case
  params = fold_weight_norm(params)
  audio = golden["src_audio"]
  padded = np.zeros((1, cv.input_width(len(audio) // 256, config)), np.float32)
  padded[0, :len(audio)] = audio
  out, out_len = cv.convert_audio(params, jnp.asarray(padded), jnp.array([len(audio)]),
                                  se_of(golden, "src"), se_of(golden, "tgt"), 0.0,
                                  jax.random.key(0), config=config)
  assert int(out_len[0]) == len(golden["vc_audio"])
  assert err(out[0, :int(out_len[0])], golden["vc_audio"]) < TOL


def test_tau_path_with_injected_noise(case):
  """tau > 0: z = m + noise * tau * exp(logs) from the golden posterior statistics, and the rest
  of the pipeline follows that z exactly."""
  config, params, golden = case
  tau = 0.3
  spec, lengths = spec_of(golden, "src")
  noise = jax.random.normal(jax.random.key(7), (1, spec.shape[1], config.inter_channels))
  model = Model(config)
  audio, z, z_p, z_hat, _, _ = model.apply(
      params, spec, lengths, se_of(golden, "src"), se_of(golden, "tgt"), tau, noise,
      method=Model.voice_conversion)
  mask = jnp.ones((1, spec.shape[1], 1))
  expected_z = sample_posterior(golden["enc_q_m"].T[None], golden["enc_q_logs"].T[None], mask,
                                tau, noise)
  assert err(z, expected_z) < TOL
  assert err(z, golden["vc_z"].T[None]) > 1e-3  # The noise really entered.
  z_p_again, _ = model.apply(params, expected_z, mask, se_of(golden, "src")[:, None, :],
                             method=lambda m, *a, **k: m.flow(*a, **k))
  assert err(z_p, z_p_again) < TOL
  dec = model.apply(params, z_hat, mask, se_of(golden, "tgt")[:, None, :], method=Model.decode)
  assert err(audio, dec) < TOL
