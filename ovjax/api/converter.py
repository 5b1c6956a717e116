"""The Python API, with OpenVoice's own names: `ToneColorConverter.from_pretrained(dir)`,
`.extract_se(paths)`, `.convert(audio_or_path, src_se, tgt_se, tau=0.3)`.

Work is batched: inputs are grouped by length into fixed-shape buckets (see `batching`), each batch
is split across all local devices, and the jitted functions compile once per bucket.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ovjax import batching, chunking, packing, precision, sharding
from ovjax.audio.io import check_not_silent, load_audio, write_wav
from ovjax.audio.vad import embedding_segments
from ovjax.checkpoint.store import load_converter, load_tone_color
from ovjax.config import ConverterConfig
from ovjax.errors import AudioError, OvjaxError
from ovjax.layers.conv import fold_weight_norm
from ovjax.models import converter as converter_model

AudioLike = Union[str, os.PathLike, np.ndarray]
MIN_SAMPLES = 1024  # Reflect padding needs > 384 samples; under ~50 ms there is nothing to hear.


@dataclasses.dataclass(frozen=True)
class PackedCall:
  """One device call of a conversion: `convert_packed`'s array arguments, its rows (the first
  n_real are real, the rest fill the devices) and the pieces they index."""
  args: tuple
  rows: list
  n_real: int
  pieces: list


class ToneColorConverter:
  """Moves speech into a reference speaker's tone colour (OpenVoice's converter, v1 or v2)."""

  def __init__(self, config: ConverterConfig, params, max_batch: int = 8, devices=None,
               max_frames: int = 2048, max_batch_frames: int = 6144, dtype: str = "float32"):
    self.config = config
    # Memory bounds: longer inputs are converted in pieces of at most max_frames frames, and a
    # batch holds at most max_batch_frames frames (per device).
    self.max_frames = max_frames
    self.max_batch_frames = max_batch_frames
    self.mesh = sharding.data_mesh(devices)
    self.n_devices = self.mesh.devices.size
    self.max_batch = max(max_batch, self.n_devices)
    self.gap = packing.min_gap(config)  # Frames between utterances packed into one row.
    # Weight norm is folded once here, not on every call. dtype: the conversion network's
    # compute dtype ("bfloat16": parameters cast once; embeddings and the STFT stay float32).
    self.compute_dtype = precision.compute_dtype(dtype)
    self.params = sharding.replicate(fold_weight_norm(jax.tree.map(np.asarray, params)), self.mesh)
    self.conversion_params = precision.cast_floating(self.params, self.compute_dtype)

  @classmethod
  def from_pretrained(cls, path, **kwargs) -> "ToneColorConverter":
    """An official OpenVoice converter folder (config.json + checkpoint.pth) or an imported one."""
    config, params = load_converter(path)
    return cls(config, params, **kwargs)

  @property
  def version(self) -> str:
    return self.config.version

  @property
  def sampling_rate(self) -> int:
    return self.config.sampling_rate

  # -- audio helpers -------------------------------------------------------------------------

  def load(self, audio: AudioLike, name: str | None = None) -> np.ndarray:
    """A path (any format soundfile/librosa reads, any rate) or a waveform at the model's rate."""
    if isinstance(audio, (str, os.PathLike)):
      return self._check_length(load_audio(audio, self.sampling_rate), str(audio))
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
      raise AudioError(f"{name or 'audio'}: expected a mono waveform, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
      raise AudioError(f"{name or 'audio'}: contains NaN or inf samples")
    check_not_silent(audio, name or "audio")
    return self._check_length(audio, name or "audio")

  def _check_length(self, audio, name):
    if len(audio) < MIN_SAMPLES:
      raise AudioError(f"{name}: too short ({len(audio)} samples at {self.sampling_rate} Hz; "
                       f"need at least {MIN_SAMPLES})")
    return audio

  def _batches(self, waves: Sequence[np.ndarray]):
    """Yield (item indices, padded audio, lengths) in bucketed, device-sharded batches, each
    waveform whole (conversion packs rows instead: `packed_calls`)."""
    hop = self.config.hop_length
    put = lambda x: sharding.shard_batch(x, self.mesh)
    frames_cap = self.max_batch_frames * self.n_devices
    for bucket, idx in batching.plan_batches([len(w) // hop for w in waves], self.max_batch,
                                             max_batch_frames=frames_cap):
      limit = batching.batch_limit(bucket, self.max_batch, frames_cap)
      size = batching.bucket_batch(len(idx), max(limit, self.n_devices), self.n_devices)
      rows = list(idx) + [idx[0]] * (size - len(idx))
      audio, _ = batching.pad_batch([waves[i] for i in rows],
                                    converter_model.input_width(bucket, self.config), size)
      lengths = np.array([len(waves[i]) for i in rows], np.int32)
      yield list(idx), put(audio), put(lengths)

  # -- tone colour -----------------------------------------------------------------------------

  def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
    """One embedding per waveform: [len(waves), gin]."""
    out = np.zeros((len(waves), self.config.gin_channels), np.float32)
    for items, audio, lengths in self._batches(waves):
      se = converter_model.extract_se(self.params, audio, lengths, config=self.config)
      out[items] = np.asarray(se)[:len(items)]
    return out

  def extract_se(self, ref_wav_list, use_vad: bool = True, se_save_path=None) -> np.ndarray:
    """Tone-colour embedding [gin] of one or more reference recordings.

    With VAD (default) the speech of each reference is cut into ~10 s segments; without it each
    file is one segment (the reference's `extract_se`). The result is the mean over segments.
    """
    if isinstance(ref_wav_list, (str, os.PathLike, np.ndarray)):
      ref_wav_list = [ref_wav_list]
    se = self.extract_ses([ref_wav_list], use_vad)[0]
    if se_save_path is not None:
      from ovjax.checkpoint.store import save_tone_color
      save_tone_color(se_save_path, se)
    return se

  def extract_ses(self, reference_sets, use_vad: bool = True, errors: str = "raise") -> list:
    """`extract_se` of many speakers at once: one embedding [gin] per set of references (paths,
    waveforms, or (name, path or waveform) pairs), the segments of every set embedded in one
    bucketed batch stream. errors="return" puts a set's own OvjaxError (an unreadable, silent or
    too short reference) in its slot instead of raising it."""
    if errors not in ("raise", "return"):
      raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
    segments, owners, out = [], [], []
    for refs in reference_sets:
      try:
        mine = self._reference_segments(refs, use_vad)
      except OvjaxError as e:
        if errors == "raise":
          raise
        out.append(e)
        continue
      owners.append((len(out), len(mine)))
      out.append(None)
      segments.extend(mine)
    embeddings = self.embed(segments) if segments else None
    start = 0
    for slot, n in owners:
      out[slot] = embeddings[start:start + n].mean(axis=0)
      start += n
    return out

  def _reference_segments(self, refs, use_vad: bool) -> list[np.ndarray]:
    if len(refs) == 0:
      raise OvjaxError("extract_se: no reference audio given")
    segments = []
    for i, ref in enumerate(refs):
      name, ref = ref if isinstance(ref, tuple) else (
          str(ref) if isinstance(ref, (str, os.PathLike)) else f"reference {i}", ref)
      wave = self.load(ref, name)
      for seg in embedding_segments(wave, self.sampling_rate, use_vad=use_vad, name=name):
        segments.append(self._check_length(seg, name))
    return segments

  def tone_color(self, se) -> np.ndarray:
    """An embedding given as an array ([gin], [1, gin, 1], ...) or a .npy/.pth file -> [gin]."""
    if isinstance(se, (str, os.PathLike)):
      return load_tone_color(se, self.config.gin_channels)
    se = np.asarray(se, np.float32).reshape(-1)
    if se.shape[0] != self.config.gin_channels:
      raise OvjaxError(f"tone-colour embedding has {se.shape[0]} channels, this model uses "
                       f"{self.config.gin_channels}")
    return se

  # -- conversion ------------------------------------------------------------------------------

  def convert(self, audio_src_path, src_se, tgt_se, output_path=None, tau: float = 0.3,
              seed: int = 0):
    """Convert one input (path or waveform) or a list of them from src_se to tgt_se.

    src_se / tgt_se: one embedding for all inputs, or a list with one per input. seed: an int
    (item i's noise from fold_in(key(seed), i)) or one seed per item (each item then gets what
    converting it alone with its seed gives), see `batching.item_keys`. tau and seeds must lie
    in `batching.NUMBER_RANGES["tau"]` and [0, `batching.SEED_LIMIT`) (OvjaxError otherwise).
    Inputs longer than max_frames are converted in overlapping pieces (see `ovjax.chunking`), so
    memory stays bounded for hour-long inputs.
    Returns a waveform (or a list); writes WAVs if output_path (or a list) given.
    """
    single = not isinstance(audio_src_path, (list, tuple))
    sources = [audio_src_path] if single else list(audio_src_path)
    tau = batching.check_number("tau", tau)  # Both before the audio loads.
    if isinstance(seed, (list, tuple, np.ndarray)):
      if len(seed) != len(sources):
        raise OvjaxError(f"{len(seed)} seeds for {len(sources)} inputs")
      seed = [batching.check_seed(s) for s in seed]
    else:
      seed = batching.check_seed(seed)
    waves = [self.load(s, str(s) if isinstance(s, (str, os.PathLike)) else f"source {i}")
             for i, s in enumerate(sources)]
    src = self._per_item(src_se, len(waves), "src_se")
    tgt = self._per_item(tgt_se, len(waves), "tgt_se")
    calls = self.packed_calls(waves, src, tgt, tau, batching.item_keys(seed, len(waves)))
    outputs = self.assemble(waves, ((call, self.run_packed(call)) for call in calls))
    if output_path is not None:
      paths = [output_path] if single else list(output_path)
      if len(paths) != len(outputs):
        raise OvjaxError(f"{len(outputs)} inputs but {len(paths)} output paths")
      for path, wave in zip(paths, outputs):
        write_wav(path, wave, self.sampling_rate)
    return outputs[0] if single else outputs

  def packed_calls(self, waves: Sequence[np.ndarray], src: np.ndarray, tgt: np.ndarray,
                   tau: float, item_keys) -> list[PackedCall]:
    """The device calls that convert these waveforms (item i from src[i] to tgt[i], noise from
    item_keys[i]): pieces of long items (`ovjax.chunking`) packed into rows (`ovjax.packing`),
    in device batches, inputs already on the devices."""
    hop = self.config.hop_length
    pieces = [p for i, w in enumerate(waves)
              for p in chunking.plan_pieces(i, len(w) // hop, self.max_frames)]
    put = lambda x: sharding.shard_batch(x, self.mesh)
    calls = []
    for rows, n_real in packing.plan_batches(
        [p.frames for p in pieces], self.max_frames, self.gap, self.max_batch, self.n_devices,
        self.max_batch_frames):
      audio, segments, slot_items, noise_blocks, noise_index = packing.build_rows(
          rows, pieces, waves, hop, self.config.filter_length)
      args = (put(audio), put(segments), put(src[slot_items]), put(tgt[slot_items]),
              jnp.float32(tau), put(item_keys[slot_items]), put(noise_blocks), put(noise_index))
      calls.append(PackedCall(args, rows, n_real, pieces))
    return calls

  def run_packed(self, call: PackedCall, compiled=None) -> jax.Array:
    """One device call (compiled: a `convert_packed` compiled for these shapes, if any)."""
    if compiled is not None:
      return compiled(self.conversion_params, *call.args)
    return converter_model.convert_packed(self.conversion_params, *call.args, config=self.config,
                                          dtype=self.compute_dtype)

  def assemble(self, waves: Sequence[np.ndarray], calls_and_outputs) -> list[np.ndarray]:
    """Each item's converted waveform from (call, output) pairs of `packed_calls(waves, ...)`,
    taken one at a time (a generator keeps one call's output in memory)."""
    hop = self.config.hop_length
    outputs = [chunking.Assembler(len(w) // hop, hop) for w in waves]
    for call, out in calls_and_outputs:
      for row, packed in zip(np.asarray(out), call.rows[:call.n_real]):
        for p, offset in packed.segments:
          piece = call.pieces[p]
          outputs[piece.item].add(piece, row[offset * hop:(offset + piece.frames) * hop])
    return [o.result() for o in outputs]

  def _per_item(self, se, n, name) -> np.ndarray:
    if isinstance(se, (list, tuple)):
      if len(se) != n:
        raise OvjaxError(f"{name}: {len(se)} embeddings for {n} inputs")
      return np.stack([self.tone_color(s) for s in se])
    return np.tile(self.tone_color(se)[None], (n, 1))
