"""Warm starts, the training-layout check, experiment configs and the metric writers."""
import dataclasses
import json
import struct

import jax
import numpy as np
import pytest

from conftest import reference_path
from ovjax.checkpoint import official
from ovjax.checkpoint.store import load_converter
from ovjax.errors import OvjaxError
from ovjax.layers.conv import fold_weight_norm
from ovjax.text.espeak import DEFAULT_ESPEAK_SYMBOLS
from ovjax.training import metrics
from ovjax.training.config import Experiment, Train, load_experiment
from ovjax.training.trainer import check_training_layout, initial_params, recipe_of


def _small_converter_experiment(**train):
  model = json.loads(reference_path("openvoice", "converter_v2_small", "config.json").read_text())
  model["ipa_symbols"] = list(DEFAULT_ESPEAK_SYMBOLS)
  return Experiment(kind="converter", model=model,
                    train=Train(discriminator_width=0.25, **train))


def test_warm_start_from_official_folders():
  """Generator from the official converter folder (the text encoder, absent there, fresh);
  discriminator from a VITS-layout D_*.pth."""
  folder = reference_path("openvoice", "converter_v2_small")
  d_pth = reference_path("training_step", "discriminator.pth")
  exp = _small_converter_experiment(init_from=str(folder), discriminator_from=str(d_pth))
  params_g, params_d = initial_params(exp, recipe_of(exp))
  loaded = official._flatten(load_converter(folder)[1]["params"])
  ours = official._flatten(params_g["params"])
  assert all(np.array_equal(ours[k], v) for k, v in loaded.items())
  assert any(k.startswith("text_enc/") for k in ours) and set(ours) - set(loaded) == {
      k for k in ours if k.startswith("text_enc/")}
  golden_d = dict(np.load(reference_path("training_step", "discriminator.npz")))
  path, layout = official.lookup("discriminators.3.convs.2.weight_v", official.DISCRIMINATOR_TABLE)
  np.testing.assert_array_equal(
      official.to_official_layout(official._flatten(params_d["params"])[path], layout),
      golden_d["discriminators.3.convs.2.weight_v"])


def test_warm_start_that_does_not_fit_is_one_line():
  exp = _small_converter_experiment(init_from=str(reference_path("openvoice", "converter_v2_small")))
  model = dict(exp.model, model=dict(exp.model["model"], hidden_channels=48))
  exp = dataclasses.replace(exp, model=model)
  with pytest.raises(OvjaxError, match="does not fit the experiment's model config"):
    initial_params(exp, recipe_of(exp))


def test_a_folded_tree_is_refused_by_name():
  exp = _small_converter_experiment()
  params_g, _ = initial_params(exp, recipe_of(exp))
  with pytest.raises(OvjaxError, match="weight norm is folded"):
    check_training_layout(fold_weight_norm(params_g), params_g, "generator")
  check_training_layout(params_g, params_g, "generator")  # The training layout passes.


def test_shipped_configs_load_and_validate():
  for name in ("converter_tiny", "base_tiny", "converter_full", "base_full", "converter_finetune"):
    exp = load_experiment(name)
    assert recipe_of(exp).kind == exp.kind
  with pytest.raises(OvjaxError, match="no such file or shipped config"):
    load_experiment("converter_typo")
  with pytest.raises(OvjaxError, match="frame_buckets must be increasing"):
    load_experiment("converter_tiny", ["data.frame_buckets=[300,200]"])
  exp = load_experiment("converter_tiny", ["train.steps=7", "data.source=/x/m.jsonl",
                                           "train.betas=[0.5,0.9]", "train.fsdp=true"])
  assert (exp.train.steps, exp.data.source, exp.train.betas, exp.train.fsdp) == (
      7, "/x/m.jsonl", (0.5, 0.9), True)


def test_crc32c_is_the_castagnoli_polynomial():
  assert metrics.crc32c(b"123456789") == 0xE3069283  # The standard check value.
  assert metrics.crc32c(b"") == 0


def _records(path):
  data = path.read_bytes()
  pos = 0
  while pos < len(data):
    (length,) = struct.unpack_from("<Q", data, pos)
    (header_crc,) = struct.unpack_from("<I", data, pos + 8)
    assert header_crc == metrics._masked_crc(data[pos:pos + 8])
    body = data[pos + 12:pos + 12 + length]
    (body_crc,) = struct.unpack_from("<I", data, pos + 12 + length)
    assert body_crc == metrics._masked_crc(body)
    yield body
    pos += 12 + length + 4


def test_tensorboard_events_are_valid_tfrecords(tmp_path):
  board = metrics.TensorBoard(tmp_path)
  board.scalars(7, {"loss_mel": 12.5, "skipped": float("nan"), "lr": 2e-4})
  board.close()
  (path,) = tmp_path.glob("events.out.tfevents.*")
  first, second = list(_records(path))
  assert b"brain.Event:2" in first
  assert b"loss_mel" in second and struct.pack("<f", 12.5) in second and b"skipped" not in second
  assert second[9:11] == b"\x10\x07"  # Field 2 (step), varint 7, after the 9-byte wall time.


def test_jsonl_lines_survive_a_crash(tmp_path):
  log = metrics.JsonLines(tmp_path / "m.jsonl")
  log.write({"step": 1, "loss": 2.0})
  # Not closed (as after kill -9): the line is already on disk.
  assert metrics.read_jsonl(tmp_path / "m.jsonl") == [{"step": 1, "loss": 2.0}]


def test_a_model_too_big_for_the_machine_is_refused_before_allocation():
  """abstract_state costs nothing; a config whose state alone would not fit is one line."""
  from ovjax.training.step import Optim
  from ovjax.training.trainer import abstract_state, check_state_fits, memory_per_device
  optim = Optim(2e-4, 0.8, 0.99, 1e-9, 0.01, 0.999875, 100)
  tiny = load_experiment("converter_tiny")
  abstract = abstract_state(recipe_of(tiny), optim, 0)
  leaves = jax.tree.leaves(abstract)
  total = sum(a.size * a.dtype.itemsize for a in leaves)
  assert check_state_fits(abstract, 1, False, memory_per_device()) == total
  assert check_state_fits(abstract, 8, True, total // 8) == total // 8  # FSDP splits it.
  with pytest.raises(OvjaxError, match="too big for this machine.*train.fsdp=True would split"):
    check_state_fits(abstract, 8, False, total - 1)

  huge = dataclasses.replace(tiny, model=json.loads(json.dumps(tiny.model)))
  huge.model["model"].update(hidden_channels=4096, filter_channels=4096, inter_channels=4096,
                             posterior_layers=64, flow_layers=64, n_flows=16)
  abstract = abstract_state(recipe_of(huge), optim, 0)
  with pytest.raises(OvjaxError, match=r"too big for this machine: \d+ M generator parameters"):
    check_state_fits(abstract, 1, False, memory_per_device())
