"""Where the converter's time goes (`ovjax bench --profile`): each stage jitted and timed alone.

Stages: the STFT, the posterior encoder, the flow forward and inverse, and the HiFi-GAN decoder
split into its input conv, each upsampling level's transposed conv and three resblocks (and,
within those, the convolutions alone, so what remains is their elementwise work: leaky ReLU,
masks, sums), and the output conv. Stages run at the shapes the full model sees, with random
weights; their sum is compared with the whole jitted model, the difference being what fusion
across stages saves or costs. Host work between stages is measured by `ovjax bench --stream`.
"""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from ovjax import benchmark, chunking, compiler, packing
from ovjax.audio.spectrogram import framed_spectrogram
from ovjax.config import ConverterConfig
from ovjax.layers.conv import Conv1d, ConvTranspose1d
from ovjax.layers.generator import ResBlock1
from ovjax.models import converter as converter_model
from ovjax.models.converter import ToneColorConverterModel


def _median_time(fn, *args, repeats: int) -> float:
  compiled = jax.jit(fn, compiler_options=compiler.INFERENCE).lower(*args).compile()
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _layer_time(module, x, *extra, repeats: int) -> float:
  params = module.init(jax.random.key(0), x, *extra)
  return _median_time(lambda p, x, *e: module.apply(p, x, *e), params, x, *extra,
                      repeats=repeats)


class _ResBlockConvs(nn.Module):
  """The six convolutions of a ResBlock1 in the same order, without its elementwise work."""
  channels: int
  kernel_size: int
  dilations: tuple

  @nn.compact
  def __call__(self, x):
    for d in self.dilations:
      x = Conv1d(self.channels, self.kernel_size, dilation=d)(x)
      x = Conv1d(self.channels, self.kernel_size)(x)
    return x


def profile_converter(config: ConverterConfig, params, batch: int = 1, frames: int = 861,
                      repeats: int = 3, progress=benchmark._quiet) -> dict:
  """{"stages_s": {stage: median seconds}} for `batch` rows of `frames` frames: the model's
  stages ("decoder" whole, then its parts as "decoder/..."), and "whole_model" as the API runs
  it. params: folded parameters."""
  rng = np.random.default_rng(0)
  hop = config.hop_length
  model = ToneColorConverterModel(config)
  rows = jnp.asarray(0.1 * rng.standard_normal((batch, frames * hop + config.filter_length)),
                     jnp.float32)
  mask = jnp.ones((batch, frames, 1))
  g = jnp.asarray(0.1 * rng.standard_normal((batch, 1, config.gin_channels)), jnp.float32)
  spec = framed_spectrogram(rows, frames, config.filter_length, hop, config.win_length)
  z = jnp.asarray(rng.standard_normal((batch, frames, config.inter_channels)), jnp.float32)
  stages = {}

  def stage(name, seconds):
    stages[name] = seconds
    progress(f"  {name}: {seconds * 1e3:.1f} ms")

  stage("spectrogram", _median_time(
      lambda r: framed_spectrogram(r, frames, config.filter_length, hop, config.win_length),
      rows, repeats=repeats))
  for name, method in (("posterior_encoder", model.posterior), ("flow_forward", model.flow_forward),
                       ("flow_reverse", model.flow_reverse)):
    first = spec if name == "posterior_encoder" else z
    stage(name, _median_time(
        lambda p, x, m, g, method=method: model.apply(p, x, m, g, method=method),
        params, first, mask, g, repeats=repeats))
  stage("decoder", _median_time(lambda p, x, m, g: model.apply(p, x, m, g, method=model.decode),
                                params, z, mask, g, repeats=repeats))

  # The decoder's parts at their own shapes.
  channels = config.upsample_initial_channel
  x = jnp.asarray(rng.standard_normal((batch, frames, config.inter_channels)), jnp.float32)
  stage("decoder/conv_pre", _layer_time(Conv1d(channels, 7), x, repeats=repeats))
  length = frames
  for i, (rate, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
    out_channels = channels // 2**(i + 1)
    x = jnp.asarray(rng.standard_normal((batch, length, out_channels * 2)), jnp.float32)
    stage(f"decoder/ups_{i}", _layer_time(
        ConvTranspose1d(out_channels, k, rate, padding=(k - rate) // 2), x, repeats=repeats))
    length *= rate
    x = jnp.asarray(rng.standard_normal((batch, length, out_channels)), jnp.float32)
    m = jnp.ones((batch, length, 1))
    for rk, rd in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
      whole = _layer_time(ResBlock1(out_channels, rk, tuple(rd)), x, m, repeats=repeats)
      convs = _layer_time(_ResBlockConvs(out_channels, rk, tuple(rd)), x, repeats=repeats)
      stage(f"decoder/resblocks_{i}_k{rk}/convs", convs)
      stage(f"decoder/resblocks_{i}_k{rk}/elementwise", max(whole - convs, 0.0))
  x = jnp.asarray(rng.standard_normal((batch, length, channels // 2**len(config.upsample_rates))),
                  jnp.float32)
  stage("decoder/conv_post", _layer_time(Conv1d(1, 7, use_bias=False), x, repeats=repeats))

  # The whole model as the API runs it (one packed row per item).
  waves = [0.1 * rng.standard_normal(frames * hop, np.float32) for _ in range(batch)]
  rows = [packing.Row(frames, ((i, 0),)) for i in range(batch)]
  items = [chunking.Piece(i, 0, frames, 0, frames) for i in range(batch)]
  audio, segments, slot_items, blocks, index = packing.build_rows(rows, items, waves, hop,
                                                                  config.filter_length)
  se = jnp.asarray(g[:, 0][slot_items])
  keys = jax.random.split(jax.random.key(0), batch)[slot_items]
  whole = _median_time(
      # The jitted entry point's own function: options may only sit on the outermost jit.
      lambda p, *a: converter_model.convert_packed.__wrapped__(p, *a, config=config),
      params, audio, segments, se, se, jnp.float32(0.0), keys, blocks, index, repeats=repeats)
  stage("whole_model", whole)
  return {"batch": batch, "frames": frames, "audio_seconds": frames * hop / config.sampling_rate,
          "stages_s": stages}


def format_profile(profiles) -> str:
  """A table of stage times (ms and % of the whole model) for each profiled batch size."""
  names = list(profiles[0]["stages_s"])
  header = ["stage"] + [f"batch {p['batch']}: ms  (%)" for p in profiles]
  body = []
  for name in names:
    cells = []
    for p in profiles:
      seconds, whole = p["stages_s"][name], p["stages_s"]["whole_model"]
      cells.append(f"{seconds * 1e3:9.1f}  ({100 * seconds / whole:5.1f})")
    body.append([name] + cells)
  widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
  fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths)))
  first = profiles[0]
  return "\n".join([f"converter stages, {first['frames']} frames "
                    f"({first['audio_seconds']:.1f} s) per item:", fmt(header),
                    fmt(["-" * w for w in widths]), *map(fmt, body)])
