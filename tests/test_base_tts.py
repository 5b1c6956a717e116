"""The VITS base speaker TTS against the reference's numbers; batching; style embeddings."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ovjax.api import BaseSpeakerTTS
from ovjax.checkpoint.official import BASE_TABLE, expected_shapes, map_state_dict
from ovjax.checkpoint.store import load_base_tts, load_tone_color
from ovjax.config import base_tts_config_from_official
from ovjax.errors import TextError
from ovjax.models import base_tts as bt
from ovjax.models.base_tts import BaseSpeakerTTSModel as Model

from conftest import load_golden, reference_path

TOL = 1e-4
SENTENCES = ("s0", "s1")


@pytest.fixture(scope="module")
def base():
  config, params = load_base_tts(reference_path("openvoice", "base_v1_small"))
  return config, params, load_golden("base_v1_small")


@pytest.fixture(scope="module")
def tts():
  return BaseSpeakerTTS.from_pretrained(reference_path("openvoice", "base_v1_small"), max_batch=4)


def err(a, b):
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(a - b)))


def inputs(golden, s):
  ids = jnp.asarray(golden[f"{s}_ids"])[None]
  return ids, jnp.array([ids.shape[1]]), jnp.array([int(golden[f"{s}_sid"])])


@pytest.mark.parametrize("s", SENTENCES)
def test_text_encoder(base, s):
  config, params, golden = base
  ids, lengths, _ = inputs(golden, s)
  h, m_p, logs_p, _ = Model(config).apply(params, ids, lengths, method=Model.encode_text)
  assert err(h[0].T, golden[f"{s}_enc_x"]) < TOL
  assert err(m_p[0].T, golden[f"{s}_m_p"]) < TOL
  assert err(logs_p[0].T, golden[f"{s}_logs_p"]) < TOL


@pytest.mark.parametrize("s", SENTENCES)
def test_durations_exact(base, s):
  config, params, golden = base
  ids, lengths, sid = inputs(golden, s)
  w_ceil, y_lengths, *_ = Model(config).apply(
      params, ids, lengths, sid, jnp.zeros((1, ids.shape[1], 2)), 0.0, 0.2, 1.0,
      method=Model.predict_durations)
  np.testing.assert_array_equal(np.asarray(w_ceil[0]), golden[f"{s}_durations"])
  assert int(y_lengths[0]) == golden[f"{s}_z"].shape[1]


@pytest.mark.parametrize("s", SENTENCES)
def test_infer_z_and_audio(base, s):
  config, params, golden = base
  ids, lengths, sid = inputs(golden, s)
  model = Model(config)
  stage1 = model.apply(params, ids, lengths, sid, jnp.zeros((1, ids.shape[1], 2)), 0.0, 0.2, 1.0,
                       method=Model.predict_durations)
  frames = golden[f"{s}_z"].shape[1]
  audio, z = model.apply(params, *stage1, sid, jnp.zeros((1, frames, config.vits.inter_channels)),
                         0.0, method=Model.synthesize)
  assert err(z[0].T, golden[f"{s}_z"]) < TOL
  assert err(audio[0], golden[f"{s}_audio"]) < TOL
  # The jitted two-stage entry point gives the same.
  audio2, y_len = bt.infer(params, ids, lengths, sid, jax.random.key(0), noise_scale=0.0,
                           noise_scale_w=0.0, config=config)
  assert int(y_len[0]) == frames and err(audio2[0], golden[f"{s}_audio"]) < TOL


def test_full_size_base_model_maps_every_key():
  manifest = json.loads(reference_path("openvoice", "full_size_manifest.json").read_text())
  config = base_tts_config_from_official(manifest["configs"]["base_v1_en"])
  keys = manifest["base_v1_en"]
  rng = np.random.default_rng(0)
  state = {k: rng.standard_normal(s).astype(np.float32) for k, s in keys.items()}
  params = map_state_dict(state, BASE_TABLE, expected_shapes(bt.param_shapes(config)))
  leaves = jax.tree.leaves(params)
  assert len(leaves) == len(keys) == 870
  assert sum(x.size for x in leaves) == 40_048_945
  assert config.speaker_ids["friendly"] == 9 and config.n_vocab == 68


def test_batched_equals_one_by_one(tts, base):
  _, _, golden = base
  sequences = [golden["s0_ids"].tolist(), golden["s1_ids"].tolist(), golden["s0_ids"][:21].tolist(),
               golden["s1_ids"][:41].tolist(), golden["s0_ids"][:9].tolist()]
  opts = dict(noise_scale=0.0, noise_scale_w=0.0)
  batched = tts.infer_ids(sequences, "cheerful", **opts)
  lengths = {len(b) for b in batched}
  assert len(lengths) >= 4  # data-dependent lengths survive batching
  for seq, out in zip(sequences, batched):
    np.testing.assert_allclose(out, tts.infer_ids([seq], "cheerful", **opts)[0], atol=TOL, rtol=0)


def test_batched_equals_one_by_one_with_noise(tts, base):
  """Item i's noise comes from its own key, indexed by frame, so padding to a longer bucket does
  not change it: batched output equals one-by-one even at the default noise scales."""
  _, _, golden = base
  seqs = [golden["s0_ids"].tolist(), golden["s1_ids"][:25].tolist()]
  batched = tts.infer_ids(seqs, "default", seed=3)
  alone = [tts.infer_ids([s], "default", seed=3)[0] for s in seqs]
  # One by one, item 1 is item 0 of its call and so gets fold_in(seed, 0): compare item 0 only,
  # and item 1 against a call where it is item 1 again but batched with a shorter partner.
  np.testing.assert_allclose(batched[0], alone[0], atol=TOL, rtol=0)
  again = tts.infer_ids([golden["s0_ids"][:5].tolist(), seqs[1]], "default", seed=3)
  np.testing.assert_allclose(batched[1], again[1], atol=TOL, rtol=0)
  assert err(batched[0][:1000], tts.infer_ids([seqs[0]], "default", seed=4)[0][:1000]) > 1e-4


def test_random_sentence_lengths_compile_a_bounded_number_of_times(tts):
  rng = np.random.default_rng(0)
  seqs = [rng.integers(1, 60, size=n).tolist() for n in rng.integers(3, 150, size=40)]
  jax.clear_caches()
  tts.infer_ids(seqs, "default")
  stage1 = bt.predict_durations._cache_size()
  stage2 = bt.synthesize._cache_size()
  token_buckets = {bucket for bucket, _ in __import__("ovjax").batching.plan_batches(
      [len(s) for s in seqs], 4, minimum=16)}
  assert stage1 <= 3 * len(token_buckets) < 40
  assert stage2 < 40 / 2  # frame buckets: bounded by the log of the longest output


def test_speech_from_text_with_styles(tts):
  text = "Hello world. This sentence has a few more words in it, so it splits."
  default = tts.synthesize(text, speaker="default", noise_scale=0, noise_scale_w=0)
  sad = tts.synthesize(text, speaker="sad", noise_scale=0, noise_scale_w=0)
  assert default.dtype == np.float32 and np.all(np.isfinite(default))
  assert not np.array_equal(default[:2000], sad[:2000])
  slow = tts.synthesize(text, speed=0.5, noise_scale=0, noise_scale_w=0)
  assert len(slow) > 1.6 * len(default)
  # Every piece ends with 50 ms (at speed 1) of silence.
  assert np.all(default[-1102:] == 0)


@pytest.mark.parametrize("text, style, language, expect", [
    ("", "default", "English", "empty"),
    ("   ", "default", "English", "empty"),
    ("... !!", "default", "English", "speakable"),
    ("Hello", "singing", "English", "style"),
    ("Hello", "default", "Klingon", "language"),
])
def test_bad_input(tts, text, style, language, expect):
  with pytest.raises(TextError) as e:
    tts.synthesize(text, speaker=style, language=language)
  assert expect in str(e.value) and "\n" not in str(e.value)


def test_base_folder_tone_color_files(tmp_path):
  """Official v1 base folders hold en_default_se.pth / en_style_se.pth: torch-saved [1,256,1].
  (The shared v2 embeddings have exactly that format; copy two in under the v1 names.)"""
  folder = tmp_path / "EN"
  shutil.copytree(reference_path("openvoice", "base_v1_small"), folder)
  ses = reference_path("openvoice_v2_ses")
  shutil.copy(ses / "en-default.pth", folder / "en_default_se.pth")
  shutil.copy(ses / "en-us.pth", folder / "en_style_se.pth")
  tts = BaseSpeakerTTS.from_pretrained(folder)
  assert tts.tone_color_file("default").name == "en_default_se.pth"
  assert tts.tone_color_file("angry").name == "en_style_se.pth"
  np.testing.assert_array_equal(load_tone_color(folder / "en_style_se.pth", 256),
                                load_tone_color(ses / "en-us.pth", 256))


def test_text_audio_does_not_depend_on_its_batch_partners(tts):
  """Text k's noise comes from (seed, k, piece): swapping its partner changes nothing."""
  a = tts.synthesize(["Hello world.", "The same second text."], seed=5)
  b = tts.synthesize(["Something else entirely, and longer.", "The same second text."], seed=5)
  np.testing.assert_allclose(a[1], b[1], atol=TOL, rtol=0)
