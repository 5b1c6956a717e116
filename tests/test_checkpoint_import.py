"""Official checkpoints map completely into ovjax's tree; bad checkpoints fail with one line."""
import json
import shutil

import jax
import numpy as np
import pytest

from ovjax.checkpoint.official import CONVERTER_TABLE, expected_shapes, map_state_dict
from ovjax.checkpoint.store import load_converter, load_tone_color, save_imported
from ovjax.config import converter_config_from_official
from ovjax.errors import CheckpointError
from ovjax.models import converter as cv

from conftest import reference_path


@pytest.fixture(scope="module")
def manifest():
  return json.loads(reference_path("openvoice", "full_size_manifest.json").read_text())


@pytest.mark.parametrize("name", ["converter_v2", "converter_v1"])
def test_full_size_converter_maps_every_key(manifest, name):
  """Every key and shape of the official full-size converter lands on exactly one ovjax
  parameter, and every ovjax parameter is filled (random arrays of the manifest's shapes)."""
  config = converter_config_from_official(manifest["configs"][name])
  keys = manifest["converter_v2"]  # v1 and v2 converters share one layout.
  rng = np.random.default_rng(0)
  state = {k: rng.standard_normal(shape).astype(np.float32) for k, shape in keys.items()}
  shapes = expected_shapes(cv.param_shapes(config))
  params = map_state_dict(state, CONVERTER_TABLE, shapes)
  leaves = jax.tree.leaves(params)
  assert len(leaves) == len(keys) == 486
  assert sum(x.size for x in leaves) == sum(int(np.prod(s)) for s in keys.values()) == 32_792_226
  # Spot-check the layout conversions on the kinds of layer there are.
  p = params["params"]
  np.testing.assert_array_equal(p["dec"]["conv_pre"]["kernel"],
                                state["dec.conv_pre.weight"].transpose(2, 1, 0))
  np.testing.assert_array_equal(p["dec"]["ups_0"]["weight_v"],
                                state["dec.ups.0.weight_v"].transpose(2, 0, 1))
  assert p["dec"]["ups_0"]["weight_g"].shape == (1, 512, 1)  # one g per input channel
  np.testing.assert_array_equal(p["flow"]["coupling_3"]["enc"]["cond_layer"]["weight_v"],
                                state["flow.flows.6.enc.cond_layer.weight_v"].transpose(2, 1, 0))
  np.testing.assert_array_equal(p["ref_enc"]["gru"]["weight_ih"],
                                state["ref_enc.gru.weight_ih_l0"].T)
  assert p["ref_enc"]["convs_0"]["weight_v"].shape == (3, 3, 1, 32)


def _state(name="converter_v2_small"):
  from ovjax.checkpoint.torch_pickle import load_state_dict
  return load_state_dict(reference_path("openvoice", name, "checkpoint.pth"))


def _shapes(name="converter_v2_small"):
  config, _ = load_converter(reference_path("openvoice", name))
  return expected_shapes(cv.param_shapes(config))


def one_line(excinfo):
  msg = str(excinfo.value)
  assert "\n" not in msg
  return msg


def test_missing_key_is_named():
  state = _state()
  del state["dec.ups.2.weight_g"]
  with pytest.raises(CheckpointError) as e:
    map_state_dict(state, CONVERTER_TABLE, _shapes())
  assert "missing" in one_line(e) and "dec/ups_2/weight_g" in one_line(e)


def test_unexpected_key_is_named():
  state = _state()
  state["dec.mystery.weight"] = np.zeros(3, np.float32)
  with pytest.raises(CheckpointError) as e:
    map_state_dict(state, CONVERTER_TABLE, _shapes())
  assert "unexpected" in one_line(e) and "dec.mystery.weight" in one_line(e)


def test_parametrizations_weight_norm_keys_are_accepted():
  """Checkpoints re-saved with torch's newer weight-norm API use original0/original1."""
  state = {k.replace(".weight_g", ".parametrizations.weight.original0")
           .replace(".weight_v", ".parametrizations.weight.original1"): v
           for k, v in _state().items()}
  params = map_state_dict(state, CONVERTER_TABLE, _shapes())
  reference = map_state_dict(_state(), CONVERTER_TABLE, _shapes())
  jax.tree.map(np.testing.assert_array_equal, params, reference)


def test_config_that_does_not_match_weights(tmp_path):
  folder = tmp_path / "ckpt"
  shutil.copytree(reference_path("openvoice", "converter_v2_small"), folder)
  cfg = json.loads((folder / "config.json").read_text())
  cfg["model"]["upsample_initial_channel"] = 128
  (folder / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(CheckpointError) as e:
    load_converter(folder)
  assert "do not match" in one_line(e)


@pytest.mark.parametrize("mutate, expect", [
    (lambda c: c["model"].update(gin_channels="32"), "gin_channels"),
    (lambda c: c["model"].update(upsample_rates=[8, 8, 2]), "upsample"),
    (lambda c: c["model"].update(typo_channels=3), "typo_channels"),
    (lambda c: c["data"].update(n_speakers=10), "base speaker"),
])
def test_invalid_config(tmp_path, mutate, expect):
  folder = tmp_path / "ckpt"
  shutil.copytree(reference_path("openvoice", "converter_v2_small"), folder)
  cfg = json.loads((folder / "config.json").read_text())
  mutate(cfg)
  (folder / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(CheckpointError) as e:
    load_converter(folder)
  assert expect in one_line(e)


@pytest.mark.parametrize("make", ["missing", "file", "empty_dir", "no_weights"])
def test_not_a_checkpoint(tmp_path, make):
  path = tmp_path / "x"
  if make == "file":
    path.write_text("hello")
  elif make == "empty_dir":
    path.mkdir()
  elif make == "no_weights":
    path.mkdir()
    shutil.copy(reference_path("openvoice", "converter_v2_small", "config.json"), path)
  with pytest.raises(CheckpointError) as e:
    load_converter(path)
  one_line(e)


def test_orbax_round_trip(tmp_path):
  config, params = load_converter(reference_path("openvoice", "converter_v1_small"))
  save_imported(tmp_path / "imported", config, params)
  config2, params2 = load_converter(tmp_path / "imported")
  assert config2 == config
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  # No temporary folder is left beside the result.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["imported"]
  with pytest.raises(CheckpointError):
    save_imported(tmp_path / "imported", config, params)  # never overwrite


def test_official_v2_tone_color_files(reference_dir):
  files = sorted((reference_dir / "openvoice_v2_ses").glob("*.pth"))
  assert len(files) == 11
  ses = np.stack([load_tone_color(f, 256) for f in files])
  assert ses.shape == (11, 256) and np.all(np.isfinite(ses))
  assert np.min(np.abs(ses[0] - ses[1:]).max(axis=1)) > 1e-3  # distinct speakers


def test_tone_color_shape_errors(tmp_path):
  np.save(tmp_path / "bad.npy", np.zeros(7, np.float32))
  with pytest.raises(CheckpointError) as e:
    load_tone_color(tmp_path / "bad.npy", 256)
  assert "7" in one_line(e)
  np.save(tmp_path / "bad2.npy", np.zeros((2, 256), np.float32))
  with pytest.raises(CheckpointError):
    load_tone_color(tmp_path / "bad2.npy", 256)
  np.save(tmp_path / "ok.npy", np.ones((1, 256, 1), np.float32))
  assert load_tone_color(tmp_path / "ok.npy", 256).shape == (256,)
