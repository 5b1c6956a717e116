"""Speed, FLOP/s and memory of the inference programs (`ovjax bench`).

Models run at their official sizes with random weights (weight norm folded, as inference uses
them): the cost of a program depends on shapes, not on weight values. Each case is compiled once
through `jitted.lower(...).compile()` (so compile time is measured on its own), called once to
warm up, then timed `repeats` times with `block_until_ready`; medians are reported.

Everything here returns plain dicts (JSON-ready); `format_table` renders them for people.

Notes on the numbers:
* FLOPs come from XLA's cost analysis of the compiled program: 2 per multiply-add, and a
  convolution's taps that fall on its zero padding are not counted. For a program split over
  several devices the analysis describes one device's share, so it is scaled by the device count.
* x_realtime is seconds of audio produced per second of compute (B * audio seconds / median).
* The matmul and conv peaks are the fastest of a few runs on one device. On GPUs, float32 dots
  and convs run at XLA's default precision (TF32 on recent NVIDIA GPUs), for peaks and models
  alike.
* Peak RSS is per case where Linux lets the high-water mark be reset (/proc/self/clear_refs),
  else the process's peak so far (`rss_peak_scope` says which). GPU peaks cannot be reset: they
  are the process's peak so far.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ovjax import batching, chunking, compiler, packing, precision, sharding
from ovjax.config import (BaseTTSConfig, ConverterConfig, base_tts_config_from_official,
                          converter_config_from_official, read_json)
from ovjax.errors import OvjaxError
from ovjax.layers.conv import fold_weight_norm
from ovjax.models import base_tts as tts_model
from ovjax.models import converter as converter_model

# The full official sizes, shipped as package data (`configs/` in the repository).
CONFIG_DIR = Path(str(importlib.resources.files("ovjax.configs")))
FULL_CONVERTER_CONFIG = CONFIG_DIR / "converter_v2.json"
FULL_TTS_CONFIG = CONFIG_DIR / "base_v1_en.json"
MODELS = ("converter", "tts")
TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs far away into the quiet "
        "green forest.")

# The machine's reference kernels: a square f32 matmul, and a conv shaped like the converter
# decoder's widest dilated resblock conv (kernel 11, dilation 5, 128 channels, ~2.5 s of audio).
MATMUL_SIZE = 4096
QUICK_MATMUL_SIZE = 2048
CONV_SHAPE = (1, 55104, 128)
CONV_KERNEL = (11, 128, 128)
CONV_DILATION = 5

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
  pass


# -- configs and parameters ------------------------------------------------------------------------


def load_config(path, kind: str):
  """An official config.json -> ConverterConfig ("converter") or BaseTTSConfig ("tts")."""
  path = Path(path)
  if not path.is_file():
    raise OvjaxError(f"{path}: no such config file (the full-size configs ship in "
                     "ovjax.configs)")
  cfg = read_json(path)
  return converter_config_from_official(cfg) if kind == "converter" else \
      base_tts_config_from_official(cfg)


def random_params(config, seed: int = 0):
  """The model's own `init` (training layout, NumPy), folded for inference."""
  model = converter_model if isinstance(config, ConverterConfig) else tts_model
  return fold_weight_norm(model.init_params(config, jax.random.key(seed)))


def param_bytes(params) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params)))


# -- measurement helpers ---------------------------------------------------------------------------


def flops_of(program, n_devices: int = 1) -> float | None:
  """Total FLOPs of one call of a lowered or compiled program, from XLA's cost analysis (None if
  absent).

  The analysis is a dict in current JAX and a list of per-program dicts in older versions; for a
  compiled program partitioned over the mesh it counts one device's share (pass n_devices)."""
  try:
    analysis = program.cost_analysis()
  except (NotImplementedError, RuntimeError):
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis:
    return None
  flops = analysis.get("flops")
  if flops is None or not math.isfinite(flops) or flops <= 0:
    return None
  return float(flops) * n_devices


def reset_peak_rss() -> bool:
  """Reset the kernel's RSS high-water mark (Linux >= 4.0); False where that is not allowed."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    return True
  except OSError:
    return False


def peak_rss_mb() -> float:
  """Peak resident memory in MiB: VmHWM (resettable) or, failing that, ru_maxrss."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else KiB


def device_peak_mb(devices) -> float | None:
  """Largest `peak_bytes_in_use` over the devices (GPU/TPU), None where not reported (CPU)."""
  peaks = []
  for d in devices:
    try:
      stats = d.memory_stats()
    except Exception:  # noqa: BLE001 - some backends raise rather than return None.
      stats = None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(stats["peak_bytes_in_use"])
  return max(peaks) / 2**20 if peaks else None


class _Memory:
  """Peak host (and device) memory over a `with` block."""

  def __init__(self, devices):
    self.devices = devices

  def __enter__(self):
    self.reset = reset_peak_rss()
    return self

  def __exit__(self, *exc):
    self.result = {"peak_rss_mb": peak_rss_mb(),
                   "rss_peak_scope": "case" if self.reset else "process",
                   "device_peak_mb": device_peak_mb(self.devices)}
    return False


def _compile(jitted, *args, **static):
  """(compiled, seconds, FLOPs): tracing + lowering + XLA compilation of one shape bucket, and
  the FLOPs of one call counted on the lowered program (the compiled one hides what runs in
  oneDNN custom calls, see `ovjax.compiler`; the lowered one counts the whole program, every
  device's share)."""
  start = time.perf_counter()
  lowered = jitted.lower(*args, **static)
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  return compiled, seconds, flops_of(lowered)


def _timed(fn: Callable[[], Any], repeats: int):
  """(last output, first call seconds, [seconds per timed call]); one warm-up call first."""
  start = time.perf_counter()
  out = jax.block_until_ready(fn())  # The first run also allocates and touches buffers.
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return out, first, times


def _speed(flops, times, audio_seconds: float, batch: int) -> dict:
  median = statistics.median(times)
  return {"median_s": median, "min_s": min(times), "times_s": times,
          "x_realtime": batch * audio_seconds / median, "per_item_seconds": median / batch,
          "flops": flops, "gflops": None if flops is None else flops / median / 1e9}


def snr_db(reference, x) -> float:
  """10 log10(sum ref^2 / sum (ref - x)^2), in float64."""
  reference = np.asarray(reference, np.float64)
  error = np.sum((reference - np.asarray(x, np.float64))**2)
  return math.inf if error == 0 else 10 * math.log10(np.sum(reference**2) / error)


# -- machine peaks ---------------------------------------------------------------------------------


def measure_peaks(repeats: int = 5, matmul_size: int = MATMUL_SIZE, progress: Progress = _quiet):
  """The machine: devices, and measured f32 GFLOP/s of a large matmul and of a dilated conv on
  the first device, from the fastest of `repeats` runs: a peak is what the hardware can reach,
  and the fastest run is the one least disturbed by other load."""
  device = jax.local_devices()[0]
  rng = np.random.default_rng(0)
  put = lambda shape: jax.device_put(rng.standard_normal(shape, np.float32), device)

  n = matmul_size
  a, b = put((n, n)), put((n, n))
  # XLA's own kernels (its f32 matmul beats oneDNN's here: 415 vs 361 GFLOP/s at 4096^2).
  matmul = jax.jit(jnp.matmul).lower(a, b).compile()
  _, _, times = _timed(lambda: matmul(a, b), repeats)
  matmul_gflops = 2 * n**3 / min(times) / 1e9
  progress(f"matmul {n}x{n} f32: {matmul_gflops:.1f} GFLOP/s")

  x, k = put(CONV_SHAPE), put(CONV_KERNEL)
  pad = CONV_DILATION * (CONV_KERNEL[0] - 1) // 2
  conv_fn = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1,), [(pad, pad)], rhs_dilation=(CONV_DILATION,),
      dimension_numbers=("NWC", "WIO", "NWC"))
  conv_lowered = jax.jit(conv_fn).lower(x, k)
  conv = conv_lowered.compile()
  _, _, times = _timed(lambda: conv(x, k), repeats)
  # Counted like the models' FLOPs (cost analysis: padding taps excluded); nominal as fallback.
  conv_flops = flops_of(conv_lowered) or 2 * math.prod(CONV_SHAPE[:2]) * math.prod(CONV_KERNEL)
  conv_gflops = conv_flops / min(times) / 1e9
  progress(f"conv {list(CONV_SHAPE)} * {list(CONV_KERNEL)} dilation {CONV_DILATION} f32: "
           f"{conv_gflops:.1f} GFLOP/s")

  devices = jax.local_devices()
  return {
      "devices": [str(d) for d in devices], "device_count": len(devices),
      "platform": device.platform, "device_kind": device.device_kind,
      "cpu_count": os.cpu_count(),
      "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
      "jax": jax.__version__, "python": platform.python_version(),
      "matmul_peak_gflops": matmul_gflops, "matmul_size": n,
      "conv_peak_gflops": conv_gflops,
      "conv_shape": {"input": list(CONV_SHAPE), "kernel": list(CONV_KERNEL),
                     "dilation": CONV_DILATION},
  }


# -- converter -------------------------------------------------------------------------------------


def converter_case(config: ConverterConfig, params, batch: int, seconds: float, repeats: int,
                   dtype: str = "float32", mesh=None, seed: int = 0, waves=None):
  """One converter benchmark row: `batch` items of `seconds` of noise audio (or the given
  waveforms) converted by the device calls `ToneColorConverter.convert` makes (packed rows, see
  `ovjax.packing`), built ahead so only device work is timed; and the outputs (float32 NumPy).

  params: folded float32 parameters (NumPy or device arrays)."""
  from ovjax.api.converter import ToneColorConverter  # The API imports the audio stack.
  mesh = sharding.data_mesh() if mesh is None else mesh
  devices = list(mesh.devices.flat)
  hop = config.hop_length
  rng = np.random.default_rng(seed)
  if waves is None:
    samples = max(int(round(seconds * config.sampling_rate)), config.filter_length)
    waves = [0.1 * rng.standard_normal(samples, np.float32) for _ in range(batch)]
  batch = len(waves)
  with _Memory(devices) as memory:
    tcc = ToneColorConverter(config, params, devices=devices, dtype=dtype)
    se = 0.1 * rng.standard_normal((2, batch, config.gin_channels), np.float32)
    # tau 0: the mean; the noise is drawn either way (tau is traced), so the work is the same,
    # and float32 and bfloat16 outputs stay comparable.
    calls = tcc.packed_calls(waves, se[0], se[1], 0.0, batching.item_keys(seed, batch))
    compiled, program_flops, compile_s, flops = {}, {}, 0.0, 0.0
    for call in calls:
      shape = call.args[1].shape
      if shape not in compiled:
        compiled[shape], took, program_flops[shape] = _compile(
            converter_model.convert_packed, tcc.conversion_params, *call.args, config=config,
            dtype=tcc.compute_dtype)
        compile_s += took
      flops += program_flops[shape] or math.nan
    run = lambda: [tcc.run_packed(call, compiled[call.args[1].shape]) for call in calls]
    results, first, times = _timed(run, repeats)
    outputs = tcc.assemble(waves, zip(calls, results))
  useful = sum(len(w) // hop for w in waves)
  computed = sum(len(call.rows) * call.rows[0].frames for call in calls)
  audio_seconds = sum(len(w) for w in waves) / batch / config.sampling_rate
  row = {"model": "converter", "dtype": dtype, "batch": batch, "audio_seconds": audio_seconds,
         "frames": useful // batch, "row_frames": sorted({c.rows[0].frames for c in calls}),
         "rows": sum(len(c.rows) for c in calls), "calls": len(calls),
         "programs": len(compiled), "computed_frames": computed,
         "useful_fraction": useful / computed,
         "total_audio_seconds": batch * audio_seconds, "compile_s": compile_s,
         "first_call_s": first, **_speed(None if math.isnan(flops) else flops, times,
                                         audio_seconds, batch),
         "param_mb": param_bytes(tcc.conversion_params) / 2**20, **memory.result}
  return row, np.stack(outputs) if len({len(o) for o in outputs}) == 1 else outputs


def bench_converter(config: ConverterConfig, params, batch_sizes: Sequence[int], seconds: float,
                    repeats: int, dtype: str = "float32", mesh=None,
                    progress: Progress = _quiet, keep_outputs: bool = False):
  """{str(batch): row} (and {batch: output} when keep_outputs) over the batch sizes."""
  rows, outputs = {}, {}
  for batch in batch_sizes:
    progress(f"converter {dtype} batch {batch}: {batch} x {seconds:g} s of audio")
    row, out = converter_case(config, params, batch, seconds, repeats, dtype, mesh)
    progress(f"  {_summary(row)}")
    rows[str(batch)] = row
    if keep_outputs:
      outputs[batch] = out
  return (rows, outputs) if keep_outputs else rows


def bench_bfloat16(config: ConverterConfig, params, batch: int, seconds: float, repeats: int,
                   mesh=None, float32=None, bfloat16=None, progress: Progress = _quiet):
  """bfloat16 speed and accuracy: the bfloat16 row plus its SNR (dB) against float32 on the
  same input, and its speed-up. float32 / bfloat16: (row, output) already measured, if any."""
  if float32 is None:
    progress(f"converter float32 batch {batch} (reference for bfloat16)")
    float32 = converter_case(config, params, batch, seconds, repeats, "float32", mesh)
  if bfloat16 is None:
    progress(f"converter bfloat16 batch {batch}: {batch} x {seconds:g} s of audio")
    bfloat16 = converter_case(config, params, batch, seconds, repeats, "bfloat16", mesh)
  (ref_row, ref), (row, out) = float32, bfloat16
  result = dict(row, snr_db=snr_db(ref, out), speedup_vs_float32=ref_row["median_s"] /
                row["median_s"], float32_median_s=ref_row["median_s"])
  progress(f"  {_summary(result)}, SNR {result['snr_db']:.1f} dB")
  return result


# -- base speaker TTS ------------------------------------------------------------------------------


def tts_sequence(config: BaseTTSConfig, text: str = TEXT) -> list[int]:
  from ovjax import text as text_frontend  # The front end's imports are heavy; only when needed.
  language = "EN" if config.frontend == "cjke" else "en-us"
  return text_frontend.text_to_sequence(text, language, config.symbols, config.add_blank,
                                        config.frontend)


def tts_case(config: BaseTTSConfig, params, batch: int, repeats: int, text: str = TEXT,
             mesh=None, seed: int = 0, sdp_ratio: float = 0.2, dtype: str = "float32"):
  """One TTS row: `batch` copies of `text`, durations + host bucket pick + synthesis timed end
  to end. Noise scales are 0, so the durations (and the bucket) are the same on every call.
  dtype: the synthesis stage's (durations stay float32). Returns (row, audio [B, samples])."""
  compute_dtype = precision.compute_dtype(dtype)
  mesh = sharding.data_mesh() if mesh is None else mesh
  devices = list(mesh.devices.flat)
  hop, rate = config.vits.hop_length, config.vits.sampling_rate
  sequence = tts_sequence(config, text)
  with _Memory(devices) as memory:
    put = lambda x: sharding.shard_batch(x, mesh)
    padded = batching.bucket_batch(batch, batch, mesh.devices.size)
    tokens = batching.bucket_frames(len(sequence), minimum=16)
    ids = np.zeros((padded, tokens), np.int32)
    ids[:, :len(sequence)] = sequence
    sid = config.speaker_ids.get("default", 0)
    args1 = (sharding.replicate(params, mesh), put(ids),
             put(np.full(padded, len(sequence), np.int32)), put(np.full(padded, sid, np.int32)),
             put(jax.random.split(jax.random.key(seed), padded)), jnp.float32(0.0),
             jnp.float32(sdp_ratio), jnp.float32(1.0))
    stage1, compile1, flops1 = _compile(tts_model.predict_durations, *args1, config=config)
    first = stage1(*args1)
    frames = batching.fine_bucket_frames(int(np.max(np.asarray(first[1]))))
    synthesis_params = precision.cast_floating(args1[0], compute_dtype)
    args2 = lambda s1: (synthesis_params, *s1, args1[3], args1[4], jnp.float32(0.0))
    stage2, compile2, flops2 = _compile(tts_model.synthesize, *args2(first), frames=frames,
                                        config=config, dtype=compute_dtype)
    stage1_times = []

    def run():
      start = time.perf_counter()
      s1 = stage1(*args1)
      y_lengths = np.asarray(s1[1])  # The host round trip real inference makes.
      stage1_times.append(time.perf_counter() - start)
      if batching.fine_bucket_frames(int(y_lengths.max())) != frames:
        raise RuntimeError("durations changed between calls with zero noise")
      return stage2(*args2(s1)), y_lengths

    (audio, y_lengths), first_s, times = _timed(run, repeats)
  audio_seconds = float(np.mean(y_lengths[:batch])) * hop / rate
  flops = [flops1, flops2]
  row = {"model": "tts", "dtype": dtype, "batch": batch, "padded_batch": padded,
         "text": text, "tokens": len(sequence), "token_bucket": tokens,
         "frames": int(np.max(y_lengths[:batch])), "bucket_frames": frames,
         "audio_seconds": audio_seconds, "total_audio_seconds": batch * audio_seconds,
         "compile_s": compile1 + compile2, "compile_durations_s": compile1,
         "compile_synthesis_s": compile2, "first_call_s": first_s,
         "durations_median_s": statistics.median(stage1_times[1:] or stage1_times),
         **_speed(None if None in flops else sum(flops), times, audio_seconds, batch),
         "param_mb": param_bytes(params) / 2**20, **memory.result}
  return row, np.asarray(audio)[:batch, :int(np.max(y_lengths[:batch])) * hop]


def bench_tts(config: BaseTTSConfig, params, batch_sizes: Sequence[int], repeats: int,
              text: str = TEXT, mesh=None, progress: Progress = _quiet, keep_outputs=False):
  """{str(batch): row} (and {batch: audio} when keep_outputs) over the batch sizes."""
  rows, outputs = {}, {}
  for batch in batch_sizes:
    progress(f"tts batch {batch}: {batch} x one sentence")
    rows[str(batch)], out = tts_case(config, params, batch, repeats, text, mesh)
    progress(f"  {_summary(rows[str(batch)])}")
    if keep_outputs:
      outputs[batch] = out
  return (rows, outputs) if keep_outputs else rows


def bench_tts_bfloat16(config: BaseTTSConfig, params, batch: int, repeats: int, float32,
                       text: str = TEXT, mesh=None, progress: Progress = _quiet):
  """The TTS with a bfloat16 synthesis stage: its row plus SNR (dB) against the float32 audio
  of the same sentence and durations, and its speed-up. float32: (row, audio) measured."""
  progress(f"tts bfloat16 batch {batch}: {batch} x one sentence")
  row, out = tts_case(config, params, batch, repeats, text, mesh, dtype="bfloat16")
  ref_row, ref = float32
  result = dict(row, snr_db=snr_db(ref, out), speedup_vs_float32=ref_row["median_s"] /
                row["median_s"], float32_median_s=ref_row["median_s"])
  progress(f"  {_summary(result)}, SNR {result['snr_db']:.1f} dB")
  return result


# -- the whole run ---------------------------------------------------------------------------------


def run_benchmark(models: Sequence[str] = MODELS, batch_sizes: Sequence[int] = (1, 8, 32),
                  seconds: float = 10.0, repeats: int = 5, dtype: str = "float32",
                  bfloat16: bool = True, quick: bool = False, converter_config=None,
                  tts_config=None, text: str = TEXT, progress: Progress = _quiet) -> dict:
  """The full report: {"machine", "settings", "converter", "tts", "bfloat16"} (see the module doc).

  converter_config / tts_config: configs (or official config.json paths); default full size.
  bfloat16: add the bfloat16 rows (the converter's network, the TTS's synthesis stage): speed
  and SNR vs float32, at the smallest batch size.
  """
  precision.compute_dtype(dtype)  # Checks the name before any work.
  unknown = set(models) - set(MODELS)
  if unknown:
    raise OvjaxError(f"unknown model(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(MODELS)}")
  batch_sizes = sorted(set(int(b) for b in batch_sizes))
  mesh = sharding.data_mesh()
  progress(f"devices: {', '.join(str(d) for d in mesh.devices.flat)}")
  result: dict[str, Any] = {
      "settings": {"models": list(models), "batch_sizes": batch_sizes, "seconds": seconds,
                   "repeats": repeats, "dtype": dtype, "quick": quick},
      "machine": measure_peaks(5, QUICK_MATMUL_SIZE if quick else MATMUL_SIZE, progress),
  }

  if "converter" in models:
    config = _config(converter_config, FULL_CONVERTER_CONFIG, "converter")
    progress("converter: random parameters")
    params = random_params(config)
    rows, outputs = bench_converter(config, params, batch_sizes, seconds, repeats, dtype, mesh,
                                    progress, keep_outputs=True)
    result["converter"] = rows
    if bfloat16 or dtype == "bfloat16":
      batch = batch_sizes[0]
      measured = (rows[str(batch)], outputs[batch])
      result["bfloat16"] = bench_bfloat16(
          config, params, batch, seconds, repeats, mesh,
          float32=measured if dtype == "float32" else None,
          bfloat16=measured if dtype == "bfloat16" else None, progress=progress)
    del params, outputs

  if "tts" in models:
    config = _config(tts_config, FULL_TTS_CONFIG, "tts")
    progress("tts: random parameters")
    params = random_params(config)
    result["tts"], outputs = bench_tts(config, params, batch_sizes, repeats, text, mesh, progress,
                                       keep_outputs=True)
    if bfloat16:
      batch = batch_sizes[0]
      result["tts_bfloat16"] = bench_tts_bfloat16(
          config, params, batch, repeats, (result["tts"][str(batch)], outputs[batch]), text,
          mesh, progress)
    del params, outputs

  if "converter" in models:
    config = _config(converter_config, FULL_CONVERTER_CONFIG, "converter")
    result["padding"] = padding_waste(config, items=100 if quick else 1000)
  add_peak_fractions(result)
  return result


# Mixed streams for the padding figure: (name, description, seconds drawn from rng).
STREAMS = (
    ("uniform_1_20s", "utterance lengths uniform in 1-20 s",
     lambda rng, n: rng.uniform(1.0, 20.0, n)),
    ("loguniform_1_20s", "utterance lengths log-uniform in 1-20 s (more short ones)",
     lambda rng, n: np.exp(rng.uniform(np.log(1.0), np.log(20.0), n))),
)


def padding_waste(config: ConverterConfig, items: int = 1000, max_frames: int = 2048,
                  seed: int = 0) -> dict:
  """Useful / computed frames of mixed-length streams, as `ToneColorConverter.convert` plans them
  (pieces packed into rows, see `ovjax.packing`) and as the power-of-two length buckets it
  replaced padded them (`batching.bucket_frames`, one item per row). Host planning only."""
  hop, rate = config.hop_length, config.sampling_rate
  out = {}
  for name, description, draw in STREAMS:
    frames = [int(s * rate) // hop for s in draw(np.random.default_rng(seed), items)]
    pieces = [p.frames for i, f in enumerate(frames)
              for p in chunking.plan_pieces(i, f, max_frames)]
    rows = packing.plan_rows(pieces, max_frames, packing.min_gap(config))
    out[name] = {"description": description, "items": items, "max_frames": max_frames,
                 "useful_fraction": sum(frames) / sum(r.frames for r in rows),
                 "row_lengths": len({r.frames for r in rows}), "rows": len(rows),
                 "bucketed_useful_fraction": sum(frames) / sum(
                     batching.bucket_frames(f) for f in frames)}
  return out


def run_peer(script, seconds: float, repeats: int = 3, threads: int | None = None) -> dict:
  """Run a peer's timing script (e.g. ../shared/peers/bench_onnx_peer.py: the reference converter
  in onnxruntime) on this machine now, and parse its `... convert_s S x_realtime X` line."""
  import subprocess  # Deferred: only --peer needs it.
  command = [sys.executable, str(script), "--seconds", f"{seconds:g}", "--repeats", str(repeats)]
  if threads is not None:
    command += ["--threads", str(threads)]
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  words = done.stdout.split()
  if done.returncode != 0 or "x_realtime" not in words:
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise OvjaxError(f"peer {script} failed (exit {done.returncode}): {tail}")
  return {"script": str(script), "seconds": seconds, "repeats": repeats,
          "line": done.stdout.strip().splitlines()[-1],
          "convert_s": float(words[words.index("convert_s") + 1]),
          "x_realtime": float(words[words.index("x_realtime") + 1])}


def _config(config, default: Path, kind: str):
  if config is None or isinstance(config, (str, os.PathLike)):
    return load_config(default if config is None else config, kind)
  return config


def _rows(result: dict):
  for model in MODELS:
    yield from result.get(model, {}).values()
  for name in ("bfloat16", "tts_bfloat16"):
    if name in result:
      yield result[name]


def add_peak_fractions(result: dict) -> None:
  """Each row's achieved GFLOP/s as a fraction of the measured matmul and conv peaks (the
  peaks are one device's; the models' GFLOP/s are over all devices, hence the division)."""
  machine = result["machine"]
  for row in _rows(result):
    per_device = None if row["gflops"] is None else row["gflops"] / machine["device_count"]
    for name in ("matmul", "conv"):
      peak = machine[f"{name}_peak_gflops"]
      row[f"{name}_peak_fraction"] = None if per_device is None else per_device / peak


# -- presentation ----------------------------------------------------------------------------------


def _summary(row: dict) -> str:
  gflops = "n/a" if row["gflops"] is None else f"{row['gflops']:.1f}"
  return (f"{row['total_audio_seconds']:.1f} s of audio in {row['median_s']:.3f} s (median): "
          f"{row['x_realtime']:.1f}x realtime, compile {row['compile_s']:.1f} s, "
          f"{gflops} GFLOP/s, peak RSS {row['peak_rss_mb']:.0f} MiB")


def format_table(result: dict) -> str:
  """A fixed-width table of every row, under a line describing the machine."""
  m = result["machine"]
  lines = [f"devices: {m['device_count']} x {m['device_kind']} ({m['platform']}), "
           f"{m['cpus_usable'] or m['cpu_count']} CPUs; f32 matmul {m['matmul_size']}^3 peak "
           f"{m['matmul_peak_gflops']:.1f} GFLOP/s, dilated conv peak "
           f"{m['conv_peak_gflops']:.1f} GFLOP/s"]
  header = ("model", "dtype", "batch", "audio/item s", "x_realtime", "median s", "compile s",
            "GFLOP/s", "% matmul pk", "peak RSS MiB", "SNR dB")
  body = []
  for row in _rows(result):
    fraction = row.get("matmul_peak_fraction")
    snr = row.get("snr_db")
    body.append((row["model"], row["dtype"], str(row["batch"]), f"{row['audio_seconds']:.2f}",
                 f"{row['x_realtime']:.2f}", f"{row['median_s']:.3f}",
                 f"{row['compile_s']:.1f}",
                 "n/a" if row["gflops"] is None else f"{row['gflops']:.1f}",
                 "n/a" if fraction is None else f"{100 * fraction:.1f}",
                 f"{row['peak_rss_mb']:.0f}", "" if snr is None else f"{snr:.1f}"))
  widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
  fmt = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths))).rstrip()
  lines += [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, body)]
  for name, row in result.get("padding", {}).items():
    lines.append(f"padding, {row['items']} utterances, {row['description']}: useful / computed "
                 f"frames {row['useful_fraction']:.3f} packed ({row['row_lengths']} row "
                 f"lengths), {row['bucketed_useful_fraction']:.3f} in length buckets")
  peer = result.get("peer")
  if peer:
    ours = result.get("converter", {}).get("1")
    ratio = "" if ours is None else \
        f"; ovjax batch 1 / peer = {ours['x_realtime'] / peer['x_realtime']:.2f}"
    lines.append(f"peer {Path(peer['script']).name}: {peer['x_realtime']:.2f}x realtime on "
                 f"{peer['seconds']:g} s{ratio}")
  if "stream" in result:
    from ovjax.stream_bench import format_stream
    lines.append(format_stream(result["stream"]))
  return "\n".join(lines)


# -- training (`ovjax bench --train`) ---------------------------------------------------------

TRAIN_CONFIGS = ("converter_tiny", "base_tiny", "converter_full", "base_full")


def train_batch(recipe, batch: int, frames: int, seed: int = 0) -> dict:
  """A loader-shaped batch of real speech sizes: `frames`-frame items of noise-like audio with
  token ids at a speech-like rate (one id per ~3 frames)."""
  rng = np.random.default_rng(seed)
  hop = recipe.vits.hop_length
  tokens = max(8, frames // 3)
  vocab = len(recipe.vits.text_symbols if recipe.kind == "converter" else recipe.model.symbols)
  return {"audio": (0.1 * rng.standard_normal((batch, frames * hop + hop))).astype(np.float32),
          "audio_lengths": np.full(batch, frames * hop, np.int32),
          "ids": rng.integers(1, vocab, (batch, tokens)).astype(np.int32),
          "id_lengths": np.full(batch, tokens, np.int32),
          "speaker_id": np.zeros(batch, np.int32)}


def bench_train_case(name: str, batch: int, frames: int, repeats: int, mesh,
                     progress: Progress = _quiet) -> dict:
  """One experiment config's train step (generator + discriminator update) at `batch` items of
  `frames` frames: steps/s, audio-seconds/s, compile time, GFLOP/s, peak memory."""
  from ovjax.training.config import load_experiment
  from ovjax.training.step import Optim, init_state, train_step
  from ovjax.training.trainer import initial_params, recipe_of
  exp = load_experiment(name)
  recipe = recipe_of(exp)
  progress(f"train {name}: initialising")
  params_g, params_d = initial_params(dataclasses.replace(
      exp, train=dataclasses.replace(exp.train, init_from="", discriminator_from="")), recipe)
  optim = Optim(steps_per_epoch=1000)
  state = jax.device_put(init_state(params_g, params_d, optim, seed=0), sharding.replicated(mesh))
  data = sharding.shard_batch(train_batch(recipe, batch, frames), mesh)
  step = jax.jit(functools.partial(train_step, recipe=recipe, optim=optim), donate_argnums=0)
  with _Memory(mesh.devices.flat) as memory:
    progress(f"train {name}: compiling")
    compiled, compile_s, flops = _compile(step, state, data)
    holder = {"state": state}

    def run():
      holder["state"], metrics = compiled(holder["state"], data)
      return metrics

    _, _, times = _timed(run, repeats)
  median = statistics.median(times)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params_g))
  audio_s = batch * frames * recipe.vits.hop_length / recipe.vits.sampling_rate
  return {"config": name, "kind": recipe.kind, "batch": batch, "frames": frames,
          "generator_params": n_params, "compile_s": compile_s, "median_s": median,
          "times_s": times, "steps_per_s": 1 / median, "audio_s_per_s": audio_s / median,
          "flops": flops, "gflops": None if flops is None else flops / median / 1e9,
          **memory.result}


def run_train_benchmark(configs=TRAIN_CONFIGS, batch: int = 2, frames: int = 300,
                        repeats: int = 3, quick: bool = False,
                        progress: Progress = _quiet) -> dict:
  mesh = sharding.data_mesh()
  machine = measure_peaks(5, QUICK_MATMUL_SIZE if quick else MATMUL_SIZE, progress)
  rows = {}
  for name in configs:
    row = bench_train_case(name, max(batch, mesh.devices.size), frames, repeats, mesh, progress)
    per_device = None if row["gflops"] is None else row["gflops"] / machine["device_count"]
    row["matmul_peak_fraction"] = (None if per_device is None
                                   else per_device / machine["matmul_peak_gflops"])
    rows[name] = row
  return {"machine": machine, "settings": {"batch": batch, "frames": frames, "repeats": repeats},
          "train": rows}


def format_train_table(result: dict) -> str:
  header = ("config", "params G", "batch x frames", "steps/s", "audio s/s", "compile s",
            "GFLOP/s", "% matmul pk", "peak RSS MiB")
  body = []
  for row in result["train"].values():
    fraction = row["matmul_peak_fraction"]
    body.append((row["config"], f"{row['generator_params'] / 1e6:.1f} M",
                 f"{row['batch']} x {row['frames']}", f"{row['steps_per_s']:.2f}",
                 f"{row['audio_s_per_s']:.1f}", f"{row['compile_s']:.1f}",
                 "n/a" if row["gflops"] is None else f"{row['gflops']:.1f}",
                 "n/a" if fraction is None else f"{100 * fraction:.1f}",
                 f"{row['peak_rss_mb']:.0f}"))
  widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
  fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths))).rstrip()
  m = result["machine"]
  return "\n".join([f"training steps on {m['device_count']} x {m['device_kind']}; f32 matmul "
                    f"peak {m['matmul_peak_gflops']:.1f} GFLOP/s", fmt(header),
                    fmt(tuple("-" * w for w in widths)), *map(fmt, body)])
