"""Every field of a model config.json is checked: a malformed or hostile config is one line
naming the file (where known) and the key, never an internal error, never accepted nonsense."""
import copy
import dataclasses
import json
import random
from pathlib import Path

import pytest

from conftest import reference_path
from ovjax import config as C
from ovjax.config import (ConverterConfig, base_tts_config_from_official,
                          converter_config_from_official, read_json)
from ovjax.errors import OvjaxError

try:  # The property test runs where hypothesis is installed; the seeded fuzz below always runs.
  import hypothesis
  from hypothesis import strategies as st
except ImportError:
  hypothesis = None

CONVERTER = json.loads(reference_path("openvoice", "converter_v2_small", "config.json").read_text())
BASE = json.loads(reference_path("openvoice", "base_v1_small", "config.json").read_text())
SHIPPED = Path(__file__).resolve().parent.parent / "configs"  # The full-size configs.


def _one_line(excinfo) -> str:
  msg = str(excinfo.value)
  assert msg and "\n" not in msg and "\r" not in msg, msg
  assert len(msg) < 400, msg  # Short, even for a huge value.
  return msg


def _set(cfg, path, value):
  """cfg with the value at `path` (keys and list indices) replaced (or added)."""
  if not path:
    return value
  out = copy.deepcopy(cfg)
  node = out
  for key in path[:-1]:
    node = node[key]
  node[path[-1]] = value
  return out


def _parse(cfg):
  """The parser for the kind of config a loader picks (n_speakers > 0: a base TTS)."""
  data = cfg.get("data") if isinstance(cfg, dict) else None
  base = isinstance(data, dict) and data.get("n_speakers") not in (0, None)
  return (base_tts_config_from_official if base else converter_config_from_official)(cfg)


# -- one case per rule -----------------------------------------------------------------------------

M, D = ("model",), ("data",)
RULES = {
    # Sizes: positive ints, bounded; no floats, bools or strings.
    "sampling_rate_low": (D + ("sampling_rate",), 999, "data.sampling_rate"),
    "sampling_rate_high": (D + ("sampling_rate",), 384_001, "data.sampling_rate"),
    "sampling_rate_float": (D + ("sampling_rate",), 22050.0, "data.sampling_rate"),
    "sampling_rate_bool": (D + ("sampling_rate",), True, "data.sampling_rate"),
    "filter_length_zero": (D + ("filter_length",), 0, "data.filter_length"),
    "filter_length_huge": (D + ("filter_length",), 8193, "data.filter_length"),
    "hop_length_negative": (D + ("hop_length",), -256, "data.hop_length"),
    "win_length_string": (D + ("win_length",), "1024", "data.win_length"),
    "n_mel_channels_zero": (D + ("n_mel_channels",), 0, "data.n_mel_channels"),
    "n_mel_channels_huge": (D + ("n_mel_channels",), 1025, "data.n_mel_channels"),
    "inter_channels_zero": (M + ("inter_channels",), 0, "model.inter_channels"),
    "hidden_channels_float": (M + ("hidden_channels",), 32.0, "model.hidden_channels"),
    "filter_channels_huge": (M + ("filter_channels",), 4097, "model.filter_channels"),
    "gin_channels_string": (M + ("gin_channels",), "32", "model.gin_channels"),
    "gin_channels_zero": (M + ("gin_channels",), 0, "model.gin_channels"),
    "upsample_initial_channel_huge": (M + ("upsample_initial_channel",), 10**100,
                                      "model.upsample_initial_channel"),
    "channels_past_4300_digits": (M + ("hidden_channels",), 10**5000, "model.hidden_channels"),
    "n_heads_zero": (M + ("n_heads",), 0, "model.n_heads"),
    "n_heads_huge": (M + ("n_heads",), 65, "model.n_heads"),
    "n_layers_zero": (M + ("n_layers",), 0, "model.n_layers"),
    "n_layers_huge": (M + ("n_layers",), 65, "model.n_layers"),
    "kernel_size_huge": (M + ("kernel_size",), 65, "model.kernel_size"),
    "posterior_layers_huge": (M + ("posterior_layers",), 1000, "model.posterior_layers"),
    "flow_layers_zero": (M + ("flow_layers",), 0, "model.flow_layers"),
    "n_flows_bool": (M + ("n_flows",), False, "model.n_flows"),
    "flow_kernel_size_zero": (M + ("flow_kernel_size",), 0, "model.flow_kernel_size"),
    "posterior_kernel_size_even": (M + ("posterior_kernel_size",), 4,
                                   "model.posterior_kernel_size"),
    # Booleans are JSON booleans.
    "zero_g_int": (M + ("zero_g",), 1, "model.zero_g"),
    "add_blank_string": (D + ("add_blank",), "true", "data.add_blank"),
    # Floats: finite, in range.
    "p_dropout_one": (M + ("p_dropout",), 1.0, "model.p_dropout"),
    "p_dropout_negative": (M + ("p_dropout",), -0.1, "model.p_dropout"),
    "p_dropout_nan": (M + ("p_dropout",), float("nan"), "model.p_dropout"),
    "p_dropout_inf": (M + ("p_dropout",), float("inf"), "model.p_dropout"),
    "p_dropout_string": (M + ("p_dropout",), "0.1", "model.p_dropout"),
    "mel_fmin_negative": (D + ("mel_fmin",), -1.0, "data.mel_fmin"),
    "mel_fmin_past_nyquist": (D + ("mel_fmin",), 11025, "data.mel_fmin"),
    "mel_fmax_below_fmin": (D + ("mel_fmax",), 0.0, "data.mel_fmax"),
    "mel_fmax_past_nyquist": (D + ("mel_fmax",), 11026.0, "data.mel_fmax"),
    "mel_fmax_huge_int": (D + ("mel_fmax",), 10**400, "data.mel_fmax"),
    # Relations.
    "win_length_past_filter_length": (D + ("win_length",), 2048, "data.win_length"),
    "hop_length_past_win_length": (D + ("win_length",), 128, "data.hop_length"),
    "upsample_product": (M + ("upsample_rates",), [8, 8, 2, 4], "model.upsample_rates"),
    "upsample_lengths": (M + ("upsample_kernel_sizes",), [16, 16, 4], "model.upsample_rates"),
    "upsample_kernel_below_rate": (M + ("upsample_kernel_sizes",), [16, 4, 4, 4],
                                   "model.upsample_kernel_sizes[1]"),
    "upsample_kernel_odd_padding": (M + ("upsample_kernel_sizes",), [16, 16, 4, 5],
                                    "model.upsample_kernel_sizes[3]"),
    "upsample_rates_empty": (M + ("upsample_rates",), [], "model.upsample_rates"),
    "upsample_rate_zero": (M + ("upsample_rates", 0), 0, "model.upsample_rates[0]"),
    "upsample_rates_not_list": (M + ("upsample_rates",), 256, "model.upsample_rates"),
    "upsample_rates_too_many": (M + ("upsample_rates",), [1] * 17, "model.upsample_rates"),
    "upsample_channels_halved_to_zero": (M + ("upsample_initial_channel",), 8,
                                         "model.upsample_initial_channel"),
    "resblock_lengths": (M + ("resblock_kernel_sizes",), [3, 7], "model.resblock_kernel_sizes"),
    "resblock_kernels_empty": (M + ("resblock_kernel_sizes",), [], "model.resblock_kernel_sizes"),
    "resblock_kernel_even": (M + ("resblock_kernel_sizes", 2), 10,
                             "model.resblock_kernel_sizes[2]"),
    "resblock_kernel_huge": (M + ("resblock_kernel_sizes", 0), 65,
                             "model.resblock_kernel_sizes[0]"),
    "dilation_list_empty": (M + ("resblock_dilation_sizes", 1), [],
                            "model.resblock_dilation_sizes[1]"),
    "dilation_zero": (M + ("resblock_dilation_sizes", 1, 2), 0,
                      "model.resblock_dilation_sizes[1][2]"),
    "dilation_huge": (M + ("resblock_dilation_sizes", 0, 0), 65,
                      "model.resblock_dilation_sizes[0][0]"),
    "dilation_not_lists": (M + ("resblock_dilation_sizes",), [1, 3, 5],
                           "model.resblock_dilation_sizes[0]"),
    "heads_do_not_divide_hidden": (M + ("n_heads",), 3, "model.n_heads"),
    "inter_channels_odd": (M + ("inter_channels",), 33, "model.inter_channels"),
    "resblock_unknown": (M + ("resblock",), "3", "model.resblock"),
    "resblock_int": (M + ("resblock",), 1, "model.resblock"),
    "resblock_2_unsupported": (M + ("resblock",), "2", "model.resblock"),
    "version_unknown": (("_version_",), "v3", "_version_"),
    "version_not_string": (("_version_",), 2, "_version_"),
    # Speakers and symbol tables.
    "converter_with_speakers": (D + ("n_speakers",), 10, "n_speakers"),
    "n_speakers_negative": (D + ("n_speakers",), -1, "data.n_speakers"),
    "n_speakers_huge": (D + ("n_speakers",), 100_001, "data.n_speakers"),
    "n_speakers_float": (D + ("n_speakers",), 0.0, "data.n_speakers"),
    "ipa_symbols_string": (("ipa_symbols",), "abc", "ipa_symbols"),
    "ipa_symbols_not_strings": (("ipa_symbols",), ["a", 1], "ipa_symbols[1]"),
    # Sections, unknown model keys.
    "config_not_object": ((), [1, 2], "'data' and 'model'"),
    "data_not_object": (D, [1], "'data'"),
    "model_not_object": (M, "x", "'model'"),
    "model_missing": ((), {"data": {}}, "'model'"),
    "unknown_model_key": (M + ("typo_channels",), 3, "typo_channels"),
}

BASE_RULES = {
    "base_without_speakers": (D + ("n_speakers",), 0, "n_speakers is 0"),
    "base_n_speakers_bool": (D + ("n_speakers",), True, "data.n_speakers"),
    "symbols_missing": (("symbols",), None, "'symbols'"),
    "symbols_empty": (("symbols",), [], "'symbols'"),
    "symbols_not_strings": (("symbols", 3), 7, "symbols[3]"),
    "symbol_too_long": (("symbols", 0), "x" * 65, "symbols[0]"),
    "speakers_not_object": (("speakers",), ["default"], "'speakers'"),
    "speakers_empty": (("speakers",), {}, "speakers"),
    "speaker_id_out_of_range": (("speakers", "default"), 10, "'speakers'"),
    "speaker_id_negative": (("speakers", "default"), -1, "'speakers'"),
    "speaker_id_bool": (("speakers", "default"), True, "'speakers'"),
    "speaker_id_float": (("speakers", "default"), 1.0, "'speakers'"),
    "text_cleaners_string": (D + ("text_cleaners",), "espeak", "data.text_cleaners"),
    "text_cleaners_empty": (D + ("text_cleaners",), [], "data.text_cleaners"),
    "text_cleaners_not_strings": (D + ("text_cleaners",), [None], "data.text_cleaners[0]"),
    "dp_p_dropout_out_of_range": (M + ("dp_p_dropout",), 1.5, "model.dp_p_dropout"),
    "base_hidden_channels_string": (M + ("hidden_channels",), "192", "model.hidden_channels"),
}


@pytest.mark.parametrize("path, value, field", RULES.values(), ids=RULES.keys())
def test_converter_rule(path, value, field):
  with pytest.raises(OvjaxError) as e:
    converter_config_from_official(_set(CONVERTER, path, value))
  assert field in _one_line(e)


@pytest.mark.parametrize("path, value, field", BASE_RULES.values(), ids=BASE_RULES.keys())
def test_base_rule(path, value, field):
  cfg = _set(BASE, path, value)
  if value is None:
    del cfg[path[-1]]
  with pytest.raises(OvjaxError) as e:
    base_tts_config_from_official(cfg)
  assert field in _one_line(e)


def test_rules_hold_for_configs_built_in_python():
  """`validate` is the one check: it refuses a bad config built in code, and makes lists tuples."""
  with pytest.raises(OvjaxError, match="model.n_heads"):
    ConverterConfig(n_heads=0).validate()
  config = ConverterConfig(upsample_rates=[8, 8, 2, 2], resblock_dilation_sizes=[[1], [3], [5]])
  assert hash(config.validate()) == hash(dataclasses.replace(
      config, upsample_rates=(8, 8, 2, 2), resblock_dilation_sizes=((1,), (3,), (5,))))
  assert set(C._FIELD_CHECKS) == {f.name for f in dataclasses.fields(ConverterConfig)}


# -- read_json: the file is named ------------------------------------------------------------------

JSON_FILES = {
    "not_an_object": ("[1, 2]", "expected a JSON object"),
    "null": ("null", "expected a JSON object"),
    "nan": ('{"data": {"mel_fmin": NaN}}', "NaN"),
    "infinity": ('{"a": -Infinity}', "Infinity"),
    "float_out_of_range": ('{"a": 1e999}', "out of float range"),
    "huge_int": ('{"a": ' + "9" * 5000 + "}", "5000 digits"),
    "nested_33": ('{"a": ' + "[" * 32 + "]" * 32 + "}", "nested more than 32"),
    "nested_100000": ("[" * 100_000 + "]" * 100_000, "nested more than 32"),
    "invalid": ('{"data": ', "not valid JSON"),
    "empty": ("", "not valid JSON"),
}


@pytest.mark.parametrize("text, expect", JSON_FILES.values(), ids=JSON_FILES.keys())
def test_read_json_refuses(tmp_path, text, expect):
  path = tmp_path / "config.json"
  path.write_text(text)
  with pytest.raises(OvjaxError) as e:
    read_json(path)
  msg = _one_line(e)
  assert msg.startswith(f"{path}: ") and expect in msg


@pytest.mark.parametrize("make, expect", [
    ("missing", "no such file"), ("folder", "cannot read"), ("not_utf8", "not valid JSON"),
    ("too_large", "larger than 4 MiB")])
def test_read_json_refuses_files(tmp_path, make, expect):
  path = tmp_path / "config.json"
  if make == "folder":
    path.mkdir()
  elif make == "not_utf8":
    path.write_bytes(b'{"a": "\xff"}')
  elif make == "too_large":
    path.write_text('{"a": "' + "x" * C.MAX_JSON_BYTES + '"}')
  with pytest.raises(OvjaxError) as e:
    read_json(path)
  assert expect in _one_line(e) and str(path) in str(e.value)


def test_nesting_at_the_limit_is_read(tmp_path):
  path = tmp_path / "config.json"
  path.write_text('{"a": ' + "[" * 31 + "]" * 31 + "}")  # 32 levels, the object included.
  assert read_json(path)["a"]


def test_checkpoint_loader_names_file_and_field(tmp_path):
  import shutil
  from ovjax.checkpoint.store import load_converter
  folder = tmp_path / "ckpt"
  shutil.copytree(reference_path("openvoice", "converter_v2_small"), folder)
  (folder / "config.json").write_text(json.dumps(_set(CONVERTER, D + ("hop_length",), 256.5)))
  with pytest.raises(OvjaxError) as e:
    load_converter(folder)
  assert _one_line(e).startswith(f"{folder / 'config.json'}: data.hop_length should be int")


# -- what must still parse -------------------------------------------------------------------------


OFFICIAL = (sorted(reference_path("openvoice").glob("*/config.json"))
            + sorted(SHIPPED.glob("*.json")))


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_official_configs_parse_and_round_trip(path):
  config = _parse(read_json(path))
  assert _parse(config.to_official()) == config
  hash(config)


def test_limits_admit_real_model_sizes():
  """Edges inside every limit parse (and keep parsing after a round trip)."""
  cfg = copy.deepcopy(CONVERTER)
  cfg["data"].update(sampling_rate=44100, filter_length=2048, win_length=2048, hop_length=512,
                     n_mel_channels=128, mel_fmin=0, mel_fmax=22050)
  cfg["model"].update(upsample_rates=[8, 8, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 2, 2],
                      upsample_initial_channel=512, n_heads=1, resblock_kernel_sizes=[1, 3],
                      resblock_dilation_sizes=[[1], [1, 3, 5]], posterior_kernel_size=1)
  config = converter_config_from_official(cfg)
  assert config.mel_fmax == 22050.0 and config.upsample_factor == 512
  assert converter_config_from_official(config.to_official()) == config
  # What validation admits, the model builds (shapes only: nothing is allocated).
  from ovjax.models import converter
  shapes = converter.param_shapes(config)
  assert shapes["params"]["dec"]["ups_4"]["weight_v"].shape[0] == 2


# -- property: any mutation parses or is an OvjaxError ---------------------------------------------


def _paths(value, prefix=()):
  """Every key and list index of a config, nested (the root included)."""
  yield prefix
  items = value.items() if isinstance(value, dict) else enumerate(value) \
      if isinstance(value, list) else ()
  for key, child in items:
    yield from _paths(child, prefix + (key,))


def _mutation_paths(cfg):
  extra = [D + ("n_speakers",), D + ("mel_fmax",), D + ("mel_fmin",), D + ("n_mel_channels",),
           D + ("add_blank",), D + ("text_cleaners",), ("_version_",), ("ipa_symbols",),
           ("symbols",), ("speakers",), M + ("dp_p_dropout",), M + ("posterior_layers",),
           M + ("posterior_kernel_size",), M + ("flow_layers",), M + ("n_flows",),
           M + ("zero_g",), M + ("use_sdp",), ("unknown_top_level",)]
  paths = [p for p in _paths(cfg) if not (p and p[0] == "symbols" and len(p) > 1)]
  return paths + extra + [("symbols", 0)]


def _check(cfg):
  """Parses (into a hashable config that round-trips) or raises a one-line OvjaxError."""
  try:
    config = _parse(cfg)
  except OvjaxError as e:
    msg = str(e)
    assert msg and "\n" not in msg and len(msg) < 400, msg
    return
  hash(config)
  assert _parse(config.to_official()) == config


_EDGES = [0, 1, -1, 2, 3, 31, 32, 64, 65, 256, 4096, 4097, 8192, 10**6, 2**63, 10**30, 0.0, 0.5,
          1.0, 256.0, -0.0, float("nan"), float("inf"), True, False, None, "", "1", "2", "v1",
          "v2", [], [0], [1], [3, 5], [[1, 3]], {}, {"a": 1}]


def _random_json(rng: random.Random, depth: int = 0):
  kind = rng.randrange(8 if depth < 3 else 5)
  if kind == 0:
    return rng.choice(_EDGES)
  if kind == 1:
    return rng.randint(-2**70, 2**70) if rng.random() < 0.3 else rng.randint(-3, 300)
  if kind == 2:
    return rng.uniform(-1e3, 1e3)
  if kind == 3:
    return rng.choice(["", "a", "espeak", "1", "v2", "x" * 70])
  if kind == 4:
    return rng.choice([True, False, None])
  if kind in (5, 6):
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(6))]
  return {rng.choice(["a", "default", "n_speakers", "model"]): _random_json(rng, depth + 1)
          for _ in range(rng.randrange(4))}


@pytest.mark.parametrize("seed", range(4))
def test_random_mutations_parse_or_refuse(seed):
  """Seeded fuzz (the same property as the hypothesis test, without hypothesis): 1-3 random
  fields of a real config replaced by random JSON values."""
  rng = random.Random(seed)
  for _ in range(500):
    cfg = copy.deepcopy(rng.choice([CONVERTER, BASE]))
    for _ in range(rng.randint(1, 3)):
      paths = _mutation_paths(cfg) if isinstance(cfg, dict) else [()]
      path = rng.choice(paths)
      try:
        cfg = _set(cfg, path, _random_json(rng))
      except (KeyError, IndexError, TypeError):
        pass  # The path went away with an earlier mutation.
    _check(cfg)


if hypothesis is not None:
  _json = st.recursive(
      st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
      | st.sampled_from(_EDGES),
      lambda children: st.lists(children, max_size=5)
      | st.dictionaries(st.text(max_size=8), children, max_size=4),
      max_leaves=12)

  @hypothesis.settings(max_examples=300, deadline=None)
  @hypothesis.given(st.sampled_from(["converter", "base"]), st.data())
  def test_hypothesis_mutations_parse_or_refuse(kind, data):
    cfg = copy.deepcopy(CONVERTER if kind == "converter" else BASE)
    for _ in range(data.draw(st.integers(1, 3))):
      paths = _mutation_paths(cfg) if isinstance(cfg, dict) else [()]
      path = data.draw(st.sampled_from(paths))
      try:
        cfg = _set(cfg, path, data.draw(_json))
      except (KeyError, IndexError, TypeError):
        pass  # The path went away with an earlier mutation.
    _check(cfg)
else:
  @pytest.mark.skip(reason="hypothesis is not installed (the seeded fuzz above still runs)")
  def test_hypothesis_mutations_parse_or_refuse():
    pass
