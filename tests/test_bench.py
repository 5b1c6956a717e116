"""`ovjax bench` on the small reference configs: the report's schema, the audio it is per,
FLOPs that scale with the batch, bfloat16 accuracy, and the CLI's atomic --json.

Speed itself is never asserted: timings on a shared machine are noise.
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ovjax.cli import bench
from ovjax import benchmark

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
SMALL_CONVERTER = REF / "openvoice" / "converter_v2_small" / "config.json"
SMALL_TTS = REF / "openvoice" / "base_v1_small" / "config.json"
ROW_NUMBERS = ("x_realtime", "median_s", "compile_s", "gflops", "flops", "peak_rss_mb",
               "audio_seconds", "per_item_seconds", "matmul_peak_fraction", "conv_peak_fraction")


@pytest.fixture(scope="module")
def result():
  for path in (SMALL_CONVERTER, SMALL_TTS):
    if not path.is_file():
      raise FileNotFoundError(f"reference data missing: {path} (clone the repo beside shared/)")
  return benchmark.run_benchmark(batch_sizes=(1, 2), seconds=1.0, repeats=1, quick=True,
                                 converter_config=SMALL_CONVERTER, tts_config=SMALL_TTS)


def _positive(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_schema(result):
  assert {"machine", "settings", "converter", "tts", "bfloat16", "tts_bfloat16"} <= set(result)
  for model in ("converter", "tts"):
    assert set(result[model]) == {"1", "2"}
    for key, row in result[model].items():
      assert row["batch"] == int(key) and row["model"] == model
      for name in ROW_NUMBERS:
        assert _positive(row[name]), (model, key, name, row[name])
      assert len(row["times_s"]) == 1
  machine = result["machine"]
  assert machine["devices"] and machine["device_count"] == len(machine["devices"])
  assert _positive(machine["matmul_peak_gflops"]) and _positive(machine["conv_peak_gflops"])
  for name in ROW_NUMBERS + ("snr_db", "speedup_vs_float32"):
    for row in ("bfloat16", "tts_bfloat16"):
      assert _positive(result[row][name]), (row, name)


def test_audio_lengths_are_what_was_asked(result):
  """The audio the rates are per: each converter item is the 1 s asked for; with zero noise every
  copy of the TTS sentence gets the same durations, so its length does not depend on the batch."""
  for row in result["converter"].values():
    assert row["audio_seconds"] == pytest.approx(1.0, abs=1 / 22050)
  assert result["tts"]["1"]["audio_seconds"] == result["tts"]["2"]["audio_seconds"]


def test_flops_scale_with_batch(result):
  # The converter's work is per computed frame (items packed into rows); the TTS's per padded
  # row (the batch is padded to a multiple of the device count).
  one, two = result["converter"]["1"], result["converter"]["2"]
  frames = two["computed_frames"] / one["computed_frames"]
  assert two["flops"] / one["flops"] == pytest.approx(frames, rel=0.1)
  one, two = result["tts"]["1"], result["tts"]["2"]
  rows = two["padded_batch"] / one["padded_batch"]
  assert two["flops"] / one["flops"] == pytest.approx(rows, rel=0.1)


def test_packing_leaves_little_padding(result):
  """1 s items (86 frames) run in rows of 88 frames, two of them packed into one row of
  86 + gap + 86 rounded to 176: no power-of-two bucket (128) and no padded batch row."""
  for key, row in result["converter"].items():
    assert row["useful_fraction"] == pytest.approx(
        int(key) * row["frames"] / row["computed_frames"])
    assert row["useful_fraction"] > 0.95, (key, row["row_frames"], row["useful_fraction"])
    assert row["rows"] == 1 and row["programs"] == 1


def test_bfloat16_is_accurate(result):
  row = result["bfloat16"]
  assert row["dtype"] == "bfloat16" and row["batch"] == 1
  assert math.isfinite(row["snr_db"]) and row["snr_db"] > 10
  assert row["float32_median_s"] == result["converter"]["1"]["median_s"]


def test_tts_bfloat16_row_is_the_same_speech(result):
  """bfloat16 synthesis keeps stage 1's float32 durations: the same audio length as the float32
  row, and an SNR that a mismatch of even one frame would wreck."""
  row, ref = result["tts_bfloat16"], result["tts"]["1"]
  assert row["dtype"] == "bfloat16" and row["batch"] == 1
  assert row["frames"] == ref["frames"] and row["audio_seconds"] == ref["audio_seconds"]
  assert math.isfinite(row["snr_db"]) and row["snr_db"] > 10
  assert row["float32_median_s"] == ref["median_s"]


def test_table_lists_every_row(result):
  lines = benchmark.format_table(result).splitlines()
  rows = [line.split() for line in lines[3:] if not line.startswith(("padding", "peer"))]
  assert [(r[0], r[1], r[2]) for r in rows] == [
      ("converter", "float32", "1"), ("converter", "float32", "2"), ("tts", "float32", "1"),
      ("tts", "float32", "2"), ("converter", "bfloat16", "1"), ("tts", "bfloat16", "1")]


def test_padding_figure_of_mixed_streams(result):
  """The padding figure: both described streams keep waste under 5 % (the length buckets wasted
  over 10 %), and the table says so."""
  assert set(result["padding"]) == {name for name, _, _ in benchmark.STREAMS}
  for row in result["padding"].values():
    assert row["useful_fraction"] >= 0.95 and row["bucketed_useful_fraction"] < 0.9
  assert sum(line.startswith("padding") for line in
             benchmark.format_table(result).splitlines()) == len(benchmark.STREAMS)


def test_peer_line_is_parsed(tmp_path):
  peer = tmp_path / "peer.py"
  peer.write_text("import sys\nprint('onnxruntime threads=2 seconds=%s convert_s 2.000 "
                  "x_realtime 5.00' % sys.argv[2])\n")
  assert benchmark.run_peer(peer, 10.0, 1)["x_realtime"] == 5.0
  peer.write_text("import sys\nsys.exit('no onnxruntime')\n")
  with pytest.raises(benchmark.OvjaxError, match="no onnxruntime"):
    benchmark.run_peer(peer, 10.0, 1)


def test_snr_db():
  ref = np.ones(100)
  assert benchmark.snr_db(ref, 0.9 * ref) == pytest.approx(20.0)
  assert benchmark.snr_db(ref, ref) == math.inf


def test_flops_of_any_cost_analysis_shape():
  class Fake:
    def __init__(self, analysis):
      self.analysis = analysis

    def cost_analysis(self):
      if isinstance(self.analysis, Exception):
        raise self.analysis
      return self.analysis

  assert benchmark.flops_of(Fake({"flops": 10.0})) == 10.0
  assert benchmark.flops_of(Fake([{"flops": 10.0}]), n_devices=4) == 40.0  # Older JAX: a list.
  for missing in ({}, [], None, {"flops": -1.0}, NotImplementedError()):
    assert benchmark.flops_of(Fake(missing)) is None


def _parse(*argv):
  parser = argparse.ArgumentParser()
  bench.register(parser.add_subparsers(dest="command"))
  return parser.parse_args(["bench", *map(str, argv)])


def test_cli_writes_json_atomically(tmp_path, capsys):
  out = tmp_path / "sub" / "bench.json"
  args = _parse("--quick", "--models", "converter", "--batch-sizes", "1", "--seconds", "1",
                "--repeats", "1", "--no-bfloat16", "--converter-config", SMALL_CONVERTER,
                "--json", out)
  assert bench.run(args) == 0
  assert "converter" in capsys.readouterr().out  # The table.
  assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # No temporary left over.
  data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
  assert set(data["converter"]) == {"1"} and "tts" not in data
  assert "bfloat16" not in data and "tts_bfloat16" not in data
  row = data["converter"]["1"]
  assert row["x_realtime"] == pytest.approx(row["audio_seconds"] / row["median_s"])
  assert data["settings"] == {"models": ["converter"], "batch_sizes": [1], "seconds": 1.0,
                              "repeats": 1, "dtype": "float32", "quick": True}


@pytest.mark.parametrize("argv", [("--batch-sizes", "0"), ("--batch-sizes", "1,x"),
                                  ("--models", "vocoder"), ("--repeats", "0"),
                                  ("--seconds", "-1"), ("--dtype", "float16")])
def test_cli_rejects_bad_options(argv, capsys):
  with pytest.raises(SystemExit) as e:
    _parse(*argv)
  assert e.value.code == 2


def test_cli_checks_paths_before_work(tmp_path):
  from ovjax.errors import OvjaxError
  with pytest.raises(OvjaxError, match="--converter-config"):
    bench.run(_parse("--converter-config", tmp_path / "missing.json"))
  with pytest.raises(OvjaxError, match="--json"):
    bench.run(_parse("--json", tmp_path / "out.txt"))


def test_train_benchmark_times_a_real_step():
  """`ovjax bench --train` on the tiny converter: one compiled step, finite rates, and the FLOPs
  of a step that updates both networks (well above the generator's forward pass alone)."""
  result = benchmark.run_train_benchmark(["converter_tiny"], batch=2, frames=64, repeats=2,
                                         quick=True)
  row = result["train"]["converter_tiny"]
  assert row["kind"] == "converter" and row["batch"] >= 2 and len(row["times_s"]) == 2
  for name in ("steps_per_s", "audio_s_per_s", "compile_s", "median_s"):
    assert _positive(row[name]), name
  assert row["generator_params"] > 500_000
  assert row["flops"] is None or row["flops"] > 6 * row["generator_params"]
  lines = benchmark.format_train_table(result).splitlines()
  assert lines[-1].split()[0] == "converter_tiny"


def test_profile_times_every_stage_and_the_whole_model():
  """`ovjax bench --profile` (small v2 config): every stage and decoder part timed, the whole
  model through the inference entry point's own function under the same compiler options."""
  from ovjax import profiling
  config = benchmark.load_config(SMALL_CONVERTER, "converter")
  result = profiling.profile_converter(config, benchmark.random_params(config), batch=2,
                                       frames=40, repeats=1)
  stages = result["stages_s"]
  assert {"spectrogram", "posterior_encoder", "flow_forward", "flow_reverse", "decoder",
          "decoder/conv_pre", "decoder/conv_post", "whole_model"} <= set(stages)
  assert sum(k.startswith("decoder/ups_") for k in stages) == len(config.upsample_rates)
  assert all(v >= 0 for v in stages.values()) and stages["whole_model"] > 0
  assert "whole_model" in profiling.format_profile([result])
