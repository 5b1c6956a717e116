"""End-to-end throughput of `ovjax batch` against pure compute (`ovjax bench --stream`).

A job file over real audio files of mixed lengths is built in a temporary folder: pieces of the
bundled reference recording (OpenVoice's demo_speaker0.mp3), cut and looped to log-uniform
lengths (many short utterances, a few long ones, as in speech corpora), written in turn as WAV at
44.1 kHz, MP3 at 44.1 kHz, WAV at 16 kHz and MP3 at 16 kHz, so decoding and resampling really
happen. Every job converts one file with the same `source_se` / `target_se` files, so the device
work of the batch run is exactly the conversions.

Measured, after a warm-up pass that compiles every program (counted and timed on its own):
* end to end: the jobs run through `JobRunner`, as `ovjax batch` runs them (parse, read ahead,
  convert, write WAVs, hash, report), outputs written;
* compute: `ToneColorConverter.convert` on the same waveforms, already in memory, in the same
  groups with the same seeds;
* serial (optional): the batch run with `prefetch=False`, host work between the groups.
Rates are seconds of output audio per wall-clock second; `ratio` is end to end / compute.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

# (container, sample rate) of the stream's files, in turn.
FORMATS = (("wav", 44100), ("mp3", 44100), ("wav", 16000), ("mp3", 16000))
DISTRIBUTION = "log-uniform"
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
  pass


# -- the stream ------------------------------------------------------------------------------------


def stream_lengths(total_seconds: float, low: float, high: float, seed: int = 0) -> list[float]:
  """Log-uniform lengths in [low, high] seconds, drawn until they add up to `total_seconds`."""
  if not 0 < low <= high:
    raise ValueError(f"need 0 < low <= high, got {low}, {high}")
  rng = np.random.default_rng(seed)
  lengths = []
  while sum(lengths) < total_seconds:
    lengths.append(float(np.exp(rng.uniform(math.log(low), math.log(high)))))
  return lengths


def cut_looped(wave: np.ndarray, start: int, samples: int) -> np.ndarray:
  """`samples` samples of `wave` from `start`, wrapping round to its beginning as needed."""
  return np.take(wave, np.arange(start, start + samples), mode="wrap").astype(np.float32)


def write_stream(folder, lengths, gin_channels: int, seed: int = 0) -> Path:
  """The audio files, the two embedding files and `jobs.jsonl` in `folder`; returns the jobs file.

  The embeddings are random (the weights are too): only the work matters here."""
  import json

  import soundfile as sf

  from ovjax import assets
  from ovjax.audio.io import load_audio
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  reference = assets.demo_reference()
  speech = {rate: load_audio(reference, rate) for rate in {r for _, r in FORMATS}}
  for name in ("source_se", "target_se"):
    np.save(folder / f"{name}.npy", 0.1 * rng.standard_normal(gin_channels).astype(np.float32))
  jobs = []
  for i, seconds in enumerate(lengths):
    kind, rate = FORMATS[i % len(FORMATS)]
    wave = speech[rate]
    audio = cut_looped(wave, int(rng.integers(len(wave))), int(round(seconds * rate)))
    name = f"utt{i:04d}_{rate // 1000}k.{kind}"
    if kind == "mp3":
      sf.write(str(folder / name), audio, rate, format="MP3", subtype="MPEG_LAYER_III")
    else:
      sf.write(str(folder / name), audio, rate, subtype="PCM_16")
    jobs.append({"id": f"utt{i:04d}", "source": name, "source_se": "source_se.npy",
                 "target_se": "target_se.npy"})
  path = folder / "jobs.jsonl"
  path.write_text("".join(json.dumps(j) + "\n" for j in jobs), encoding="utf-8")
  return path


# -- measurement -----------------------------------------------------------------------------------


@contextlib.contextmanager
def compiles():
  """Count and time XLA compilations inside the block: yields {"count", "seconds"}."""
  import jax.monitoring
  seen = {"count": 0, "seconds": 0.0}

  def listener(event, seconds, **_):
    if event == BACKEND_COMPILE_EVENT:
      seen["count"] += 1
      seen["seconds"] += seconds

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def run_batch(jobs_file, out_dir, converter, group_size: int, prefetch: bool = True) -> dict:
  """The jobs file through `ovjax batch`'s path (parse, `JobRunner`, report): wall seconds and
  the audio seconds written."""
  from ovjax import jobs as jobs_lib
  start = time.perf_counter()
  jobs = jobs_lib.parse_jobs(jobs_file, out_dir, has_converter=True, has_base=False)
  report = jobs_lib.Report(Path(out_dir) / jobs_lib.REPORT_NAME)
  jobs_lib.JobRunner(out_dir, converter, group_size=group_size, on_result=report.add,
                     prefetch=prefetch).run([j for j in jobs if j.status is None])
  report.close(jobs)
  seconds = time.perf_counter() - start
  failed = [j for j in jobs if j.status == "failed"]
  return {"seconds": seconds, "audio_seconds": sum(j.seconds_audio or 0.0 for j in jobs),
          "failed": len(failed), "first_error": failed[0].error if failed else None,
          "jobs": jobs}


def compute_inputs(jobs_file, converter, group_size: int) -> list[dict]:
  """What the batch run's conversion calls get, read into memory: per group, the waveforms,
  seeds, tau and output names (the same groups `JobRunner` makes)."""
  from ovjax import jobs as jobs_lib
  jobs = jobs_lib.parse_jobs(jobs_file, Path(jobs_file).parent / "unused", has_converter=True,
                             has_base=False)
  return [{"waves": [converter.load(j.spec["source"]) for j in group],
           "seeds": [j.spec["seed"] for j in group], "tau": group[0].spec["tau"],
           "outs": [j.out for j in group]}
          for group in jobs_lib.conversion_groups(
              jobs, group_size, jobs_lib.group_seconds(converter, group_size))]


def run_compute(converter, groups, source_se, target_se) -> tuple[float, float, dict]:
  """(wall seconds, output audio seconds, {out: waveform}) of converting the in-memory groups."""
  start, outputs = time.perf_counter(), {}
  for group in groups:
    waves = converter.convert(group["waves"], source_se, target_se, tau=group["tau"],
                              seed=group["seeds"])
    outputs.update(zip(group["outs"], waves))
  seconds = time.perf_counter() - start
  audio = sum(len(w) for w in outputs.values()) / converter.sampling_rate
  return seconds, audio, outputs


def _identical(out_dir, outputs: dict) -> bool:
  import soundfile as sf
  return all(np.array_equal(sf.read(str(Path(out_dir) / name), dtype="float32")[0], wave)
             for name, wave in outputs.items())


def _rate(audio: float, seconds: float) -> float:
  return audio / max(seconds, 1e-9)


def run_stream_benchmark(config=None, params=None, total_seconds: float = 100.0,
                         min_seconds: float = 1.0, max_seconds: float = 20.0,
                         group_size: int = 8, repeats: int = 1, serial: bool = True,
                         seed: int = 0, dtype: str = "float32",
                         progress: Progress = _quiet) -> dict:
  """End to end vs compute on a mixed stream (see the module doc); a JSON-ready dict.

  config: a ConverterConfig or an official config.json path (default: the full-size v2
  converter); params: its folded parameters (default: random). repeats: timed passes of each
  kind, alternated so drift in a shared machine's load hits them alike; medians reported."""
  from ovjax import benchmark
  from ovjax.api import ToneColorConverter
  from ovjax.config import ConverterConfig
  if not isinstance(config, ConverterConfig):
    config = benchmark.load_config(config or benchmark.FULL_CONVERTER_CONFIG, "converter")
  params = benchmark.random_params(config, seed) if params is None else params
  repeats = max(1, int(repeats))
  converter = ToneColorConverter(config, params, max_batch=group_size, dtype=dtype)
  lengths = stream_lengths(total_seconds, min_seconds, max_seconds, seed)
  with tempfile.TemporaryDirectory(prefix="ovjax_stream_") as tmp:
    tmp = Path(tmp)
    progress(f"stream: {len(lengths)} files, {sum(lengths):.1f} s of audio "
             f"({DISTRIBUTION} {min_seconds:g}-{max_seconds:g} s, WAV/MP3 at 44.1/16 kHz)")
    jobs_file = write_stream(tmp / "data", lengths, config.gin_channels, seed)
    start = time.perf_counter()
    groups = compute_inputs(jobs_file, converter, group_size)
    host_read_s = time.perf_counter() - start  # Decoding + resampling every source, serially.
    source_se = converter.tone_color(tmp / "data" / "source_se.npy")
    target_se = converter.tone_color(tmp / "data" / "target_se.npy")

    progress("stream: warm-up (compiles every program)")
    with compiles() as warm:
      start = time.perf_counter()
      run_compute(converter, groups, source_se, target_se)
      warmup_s = time.perf_counter() - start
    timings = {"compute": [], "end_to_end": [], "serial": []}
    with compiles() as timed:
      for r in range(repeats):
        seconds, audio, outputs = run_compute(converter, groups, source_se, target_se)
        timings["compute"].append(seconds)
        progress(f"stream: compute {_rate(audio, seconds):.2f} audio-s/s")
        modes = (("end_to_end", True), ("serial", False)) if serial else (("end_to_end", True),)
        for mode, prefetch in modes:
          out_dir = tmp / f"{mode}_{r}"
          run = run_batch(jobs_file, out_dir, converter, group_size, prefetch)
          if run["failed"]:
            raise RuntimeError(f"stream bench: {run['failed']} jobs failed ({run['first_error']})")
          timings[mode].append(run["seconds"])
          progress(f"stream: {mode} {_rate(run['audio_seconds'], run['seconds']):.2f} audio-s/s")
        identical = _identical(tmp / f"end_to_end_{r}", outputs)
  medians = {k: statistics.median(v) for k, v in timings.items() if v}
  rates = {k: _rate(audio, v) for k, v in medians.items()}
  return {
      "files": len(lengths), "input_audio_seconds": sum(lengths), "audio_seconds": audio,
      "lengths": {"distribution": DISTRIBUTION, "low_s": min_seconds, "high_s": max_seconds,
                  "min_s": min(lengths), "median_s": statistics.median(lengths),
                  "max_s": max(lengths)},
      "formats": [f"{kind} {rate} Hz" for kind, rate in FORMATS],
      "group_size": group_size, "dtype": dtype, "repeats": repeats,
      "model_rate": config.sampling_rate,
      "times_s": timings,
      "compute_s": medians["compute"], "compute_audio_s_per_s": rates["compute"],
      "end_to_end_s": medians["end_to_end"], "end_to_end_audio_s_per_s": rates["end_to_end"],
      "ratio": rates["end_to_end"] / rates["compute"],
      "serial_s": medians.get("serial"), "serial_audio_s_per_s": rates.get("serial"),
      "serial_ratio": rates["serial"] / rates["compute"] if "serial" in rates else None,
      "host_read_s": host_read_s,
      "warmup_s": warmup_s, "compiles": warm["count"], "compile_s": warm["seconds"],
      "timed_compiles": timed["count"], "outputs_identical": identical,
  }


def format_stream(row: dict) -> str:
  """The stream's lines under the bench table."""
  serial = ("" if row["serial_audio_s_per_s"] is None else
            f"; serial (no prefetch) {row['serial_audio_s_per_s']:.2f} "
            f"({100 * row['serial_ratio']:.0f}%)")
  lengths = row["lengths"]
  return "\n".join([
      f"stream: {row['files']} files, {row['input_audio_seconds']:.1f} s of audio "
      f"({lengths['distribution']} {lengths['low_s']:g}-{lengths['high_s']:g} s; "
      f"{', '.join(row['formats'])}), groups of {row['group_size']}, "
      f"{row.get('dtype', 'float32')}, median of {row['repeats']}",
      f"  audio-s/s: end to end {row['end_to_end_audio_s_per_s']:.2f}, compute "
      f"{row['compute_audio_s_per_s']:.2f}, ratio {100 * row['ratio']:.0f}%{serial}",
      f"  warm-up {row['warmup_s']:.1f} s: {row['compiles']} compilations, "
      f"{row['compile_s']:.1f} s compiling ({row['timed_compiles']} while timed); host read "
      f"of every source {row['host_read_s']:.2f} s; outputs identical to compute: "
      f"{row['outputs_identical']}"])
