"""`ovjax bench`: speed, FLOP/s and memory of the full-size models with random weights."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ovjax.cli import common
from ovjax.errors import OvjaxError

_MODELS = ("converter", "tts")
# (batch sizes, seconds of audio per item, timed repeats): --quick fits in ~5 minutes on two
# CPU cores; the full run is long there (batch 32 x 10 s), and minutes on an accelerator.
_FULL = ((1, 8, 32), 10.0, 5)
_QUICK = ((1, 8), 4.0, 2)
# --stream: (seconds of audio in all, shortest and longest file, timed passes of each kind).
_STREAM_FULL = (100.0, 1.0, 20.0, 3)
_STREAM_QUICK = (12.0, 1.0, 4.0, 1)


def _batch_sizes(text: str) -> tuple[int, ...]:
  try:
    sizes = tuple(int(s) for s in text.split(",") if s.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
  if not sizes or min(sizes) < 1:
    raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got {text!r}")
  return sizes


def _models(text: str) -> tuple[str, ...]:
  models = tuple(m.strip() for m in text.split(",") if m.strip())
  unknown = [m for m in models if m not in _MODELS]
  if not models or unknown:
    raise argparse.ArgumentTypeError(f"choose from {', '.join(_MODELS)} (comma-separated), "
                                     f"got {text!r}")
  return models


def _repeats(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
  return value


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "bench", parents=list(parents),
      help="benchmark the converter and base TTS (speed, FLOP/s, memory, bfloat16)",
      description="Time the full-size converter and base speaker TTS with random weights on "
                  "every local device: x realtime (seconds of audio per second of compute), "
                  "compile time per shape bucket, GFLOP/s from XLA's cost analysis against a "
                  "measured matmul and conv peak, peak memory, and the converter and the TTS's "
                  "synthesis stage in bfloat16 (speed and SNR against float32). Prints a table; --json writes every number.")
  p.add_argument("--quick", action="store_true",
                 help=f"batch sizes {','.join(map(str, _QUICK[0]))}, {_QUICK[1]:g} s of audio, "
                      f"{_QUICK[2]} repeats (explicit options still win)")
  p.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
  p.add_argument("--batch-sizes", type=_batch_sizes, metavar="B,B,...",
                 help=f"default: {','.join(map(str, _FULL[0]))}")
  p.add_argument("--seconds", type=common.number_type(0, low_open=True),
                 help=f"seconds of audio per converter item (default: {_FULL[1]:g})")
  p.add_argument("--repeats", type=_repeats,
                 help=f"timed runs per case, after one warm-up; the median is reported "
                      f"(default: {_FULL[2]})")
  common.add_dtype_arg(p, "converter compute dtype of the main rows and of --stream (default: "
                          "float32; the TTS's main rows run in float32, its bfloat16 row beside "
                          "them)")
  p.add_argument("--models", type=_models, default=_MODELS, metavar="M,M",
                 help="converter, tts or both (default: converter,tts)")
  p.add_argument("--no-bfloat16", action="store_true",
                 help="skip the bfloat16 rows of the converter and of the TTS's synthesis "
                      "stage (speed and SNR vs float32 at the smallest batch size)")
  p.add_argument("--converter-config", metavar="CONFIG.json",
                 help="official converter config.json to size the model (default: the "
                      "repository's configs/converter_v2.json)")
  p.add_argument("--tts-config", metavar="CONFIG.json",
                 help="official base speaker config.json (default: configs/base_v1_en.json)")
  p.add_argument("--profile", action="store_true",
                 help="time the converter's stages one by one (STFT, posterior encoder, flow, "
                      "each decoder layer, convs vs elementwise work) at each batch size")
  p.add_argument("--peer", metavar="SCRIPT.py",
                 help="also run a peer's timing script in the same run (e.g. "
                      "../shared/peers/bench_onnx_peer.py: the reference converter in "
                      "onnxruntime) on the same seconds of audio, and print the ratio")
  stream = p.add_argument_group("end to end (--stream)")
  stream.add_argument("--stream", action="store_true",
                      help="also run a job file of real audio files (WAV and MP3 at 44.1 and "
                           "16 kHz, log-uniform lengths) through `ovjax batch`'s runner with the "
                           "converter, outputs written, and compare its audio-seconds/s with "
                           "pure compute on the same waveforms in memory")
  stream.add_argument("--stream-seconds", type=common.number_type(0, low_open=True),
                      metavar="S",
                      help=f"seconds of audio in the stream (default: {_STREAM_FULL[0]:g} in "
                           f"files of {_STREAM_FULL[1]:g}-{_STREAM_FULL[2]:g} s; --quick: "
                           f"{_STREAM_QUICK[0]:g} in files of {_STREAM_QUICK[1]:g}-"
                           f"{_STREAM_QUICK[2]:g} s)")
  train = p.add_argument_group("training (--train)")
  train.add_argument("--train", action="store_true",
                     help="time train steps instead (generator + discriminator update): "
                          "steps/s, audio-seconds/s, compile time, GFLOP/s, peak memory")
  train.add_argument("--train-configs", metavar="NAME,NAME",
                     help="experiment configs (default: converter_tiny,base_tiny,"
                          "converter_full,base_full; --quick: the two tiny ones)")
  train.add_argument("--train-batch", type=_repeats, default=2, metavar="B",
                     help="items per step (default: 2)")
  train.add_argument("--train-frames", type=_repeats, default=300, metavar="F",
                     help="spectrogram frames per item (default: 300, ~3.5 s)")
  p.set_defaults(run=run)


def _finite(value):
  """JSON has no inf/NaN: such numbers (an SNR of identical outputs) become null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


def run(args) -> int:
  progress = common.Progress(args)
  out = None if args.json is None else common.check_output_file(args.json, ".json", "--json")
  for flag, path in (("--converter-config", args.converter_config),
                     ("--tts-config", args.tts_config)):
    if path is not None and not Path(path).is_file():
      raise OvjaxError(f"{flag} {path}: no such file")
  if args.peer is not None and not Path(args.peer).is_file():
    raise OvjaxError(f"--peer {args.peer}: no such file")
  if args.peer is not None and args.converter_config is not None:
    raise OvjaxError("--peer times the full-size converter: leave out --converter-config")
  if args.stream and args.train:
    raise OvjaxError("--stream goes with the inference benchmark, not --train")
  defaults = _QUICK if args.quick else _FULL
  batch_sizes = args.batch_sizes or defaults[0]
  seconds = args.seconds or defaults[1]
  repeats = args.repeats or defaults[2]

  import jax  # Deferred: imports JAX (seconds); `ovjax --help` stays instant.
  # Compile times must be real compilations: the CLI's persistent cache would turn a second run
  # into cache reads. (Effective only before the first compilation, as in a fresh `ovjax bench`.)
  jax.config.update("jax_enable_compilation_cache", False)
  from ovjax import benchmark
  from ovjax.fileio import atomic_output

  if args.train:
    configs = (args.train_configs.split(",") if args.train_configs else
               benchmark.TRAIN_CONFIGS[:2] if args.quick else benchmark.TRAIN_CONFIGS)
    result = benchmark.run_train_benchmark(configs, args.train_batch, args.train_frames,
                                           args.repeats or (2 if args.quick else 3),
                                           args.quick, progress)
    table = benchmark.format_train_table(result)
  else:
    progress(f"bench: {', '.join(args.models)}; batch sizes {','.join(map(str, batch_sizes))}; "
             f"{seconds:g} s of audio per converter item; {repeats} repeats")
    result = benchmark.run_benchmark(
        models=args.models, batch_sizes=batch_sizes, seconds=seconds, repeats=repeats,
        dtype=args.dtype, bfloat16=not args.no_bfloat16, quick=args.quick,
        converter_config=args.converter_config, tts_config=args.tts_config, progress=progress)
    if args.stream:
      from ovjax import stream_bench
      total, low, high, stream_repeats = _STREAM_QUICK if args.quick else _STREAM_FULL
      result["stream"] = stream_bench.run_stream_benchmark(
          args.converter_config, total_seconds=args.stream_seconds or total, min_seconds=low,
          max_seconds=high, repeats=args.repeats or stream_repeats, dtype=args.dtype,
          progress=progress)
    if args.profile:
      from ovjax import profiling
      config = benchmark.load_config(args.converter_config or benchmark.FULL_CONVERTER_CONFIG,
                                     "converter")
      params = benchmark.random_params(config)
      frames = int(seconds * config.sampling_rate) // config.hop_length
      result["profile"] = []
      for batch in batch_sizes:
        progress(f"profile: converter stages at batch {batch}, {frames} frames")
        result["profile"].append(profiling.profile_converter(config, params, batch, frames,
                                                             repeats, progress))
    if args.peer is not None:
      progress(f"peer: {args.peer} on {seconds:g} s of audio")
      result["peer"] = benchmark.run_peer(args.peer, seconds, repeats)
    table = benchmark.format_table(result)
    if args.profile:
      from ovjax import profiling
      table += "\n\n" + profiling.format_profile(result["profile"])
  if not progress.quiet:
    print(table, flush=True)
  if out is not None:
    with atomic_output(out) as tmp:
      with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_finite(result), f, indent=2)
        f.write("\n")
    progress(f"wrote {out}")
  progress(f"done in {progress.elapsed:.0f} s")
  return 0
