"""The tone-colour converter: posterior encoder -> flow(g_src) -> flow^-1(g_tgt) -> HiFi-GAN.

`ToneColorConverterModel` is a Flax Linen module with the reference's submodule names (`enc_q`,
`flow`, `dec`, `ref_enc`). Tone-colour embeddings are [B, gin_channels] here (the reference keeps
[B, gin, 1]); layouts are channels-last.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ovjax import compiler, packing
from ovjax.audio.spectrogram import framed_spectrogram, linear_spectrogram
from ovjax.config import ConverterConfig
from ovjax.layers.init import fast_init
from ovjax.layers.masks import sequence_mask
from ovjax.layers.posterior_encoder import sample_posterior
from ovjax.layers.reference_encoder import ReferenceEncoder
from ovjax.layers.text_encoder import TextEncoder
from ovjax.models.vits import VitsCore


class ToneColorConverterModel(VitsCore):
  config: ConverterConfig

  @property
  def vits_config(self) -> ConverterConfig:
    return self.config

  def setup(self):
    self.setup_core()
    self.ref_enc = ReferenceEncoder(self.config.gin_channels)

  def __call__(self, spec, lengths, tau, noise, deterministic: bool = True):
    """Self-conversion (embedding from the input itself); touches every parameter (for init)."""
    se = self.extract_se(spec, lengths)
    return self.voice_conversion(spec, lengths, se, se, tau, noise, deterministic)

  def extract_se(self, spec, lengths):
    """spec [B, T, F], lengths [B] -> tone-colour embedding [B, gin]."""
    return self.ref_enc(spec, lengths)

  def voice_conversion(self, spec, lengths, src_se, tgt_se, tau, noise,
                       deterministic: bool = True):
    """Returns (audio [B, T*hop], z, z_p, z_hat, m, logs); noise ~ N(0, 1) shaped like z."""
    mask = sequence_mask(lengths, spec.shape[1], spec.dtype)
    return self.voice_conversion_masked(spec, mask, src_se[:, None, :], tgt_se[:, None, :], tau,
                                        noise, deterministic)

  def voice_conversion_masked(self, spec, mask, g_src, g_tgt, tau, noise,
                              deterministic: bool = True):
    """`voice_conversion` with an explicit mask [B, T, 1] and embeddings [B, 1 or T, gin]: a
    packed row holds several utterances, each with its own embeddings, zeros between them."""
    m, logs = self.posterior(spec, mask, g_src, deterministic)
    z = sample_posterior(m, logs, mask, tau, noise)
    z_p = self.flow_forward(z, mask, g_src, deterministic)
    z_hat = self.flow_reverse(z_p, mask, g_tgt, deterministic)
    audio = self.decode(z_hat * mask, mask, g_tgt)
    return audio, z, z_p, z_hat, m, logs


class ToneColorConverterTrainModel(ToneColorConverterModel):
  """The converter as it trains (MeloTTS' recipe with use_vc): the inference model plus an IPA
  text encoder `text_enc` whose prior z_p must match, so the flow learns to take the tone colour
  out. The text encoder is training-only: exports drop it."""

  def setup(self):
    super().setup()
    c = self.config
    if not c.text_symbols:
      raise ValueError("config: a converter to train needs its text symbol table (ipa_symbols)")
    self.text_enc = TextEncoder(len(c.text_symbols), c.inter_channels, c.hidden_channels,
                                c.filter_channels, c.n_heads, c.n_layers, c.kernel_size,
                                c.p_dropout)

  def __call__(self, spec, lengths, tau, noise, ids, id_lengths, deterministic: bool = True):
    self.text_enc(ids, id_lengths)
    return super().__call__(spec, lengths, tau, noise, deterministic)


def _init(config: ConverterConfig, key: jax.Array, frames: int = 8):
  model = ToneColorConverterModel(config)
  spec = jnp.zeros((1, frames, config.spec_channels))
  return model.init(key, spec, jnp.array([frames]), 0.0,
                    jnp.zeros((1, frames, config.inter_channels)))


def _init_train(config: ConverterConfig, key: jax.Array, frames: int = 8):
  model = ToneColorConverterTrainModel(config)
  spec = jnp.zeros((1, frames, config.spec_channels))
  ids = jnp.zeros((1, 4), jnp.int32)
  return model.init(key, spec, jnp.array([frames]), 0.0,
                    jnp.zeros((1, frames, config.inter_channels)), ids, jnp.array([4]))


def init_train_params(config: ConverterConfig, key: jax.Array):
  """Like `init_params`, plus the training-only text encoder (`text_enc`)."""
  return fast_init(functools.partial(_init_train, config), key)


def train_param_shapes(config: ConverterConfig):
  return jax.eval_shape(functools.partial(_init_train, config), jax.random.key(0))


def init_params(config: ConverterConfig, key: jax.Array):
  """Random parameters (NumPy) in the training (weight-normed) layout, with the reference's
  initial values (PyTorch's defaults, HiFi-GAN's N(0, 0.01), zero flow projections); seconds at
  full size (see `ovjax.layers.init.fast_init`)."""
  return fast_init(functools.partial(_init, config), key)


def param_shapes(config: ConverterConfig):
  """The parameter tree's shapes without allocating it."""
  return jax.eval_shape(functools.partial(_init, config), jax.random.key(0))


# Frames per noise block (pieces of long inputs start on block boundaries); one constant with
# the host-side packing plan, which lays out the blocks of each row.
NOISE_BLOCK = packing.NOISE_BLOCK


def input_width(frames: int, config: ConverterConfig) -> int:
  """Samples a row must hold to yield `frames` frames (the last window reaches past the hop)."""
  return frames * config.hop_length + config.filter_length


def audio_to_spec(audio, lengths, config: ConverterConfig, offsets=None, start_frames=None):
  """Waveforms [B, F * hop + n_fft] -> spectrograms of F frames (see `linear_spectrogram`)."""
  frames = (audio.shape[1] - config.filter_length) // config.hop_length
  return linear_spectrogram(audio, lengths, config.filter_length, config.hop_length,
                            config.win_length, frames=frames, offsets=offsets,
                            start_frames=start_frames)


def frame_noise(key, start_frame, frames: int, channels: int, dtype=jnp.float32):
  """N(0, 1) noise [frames, channels] for frames start_frame... of an item, a function of the
  absolute frame index (block b of NOISE_BLOCK frames comes from fold_in(key, b)): an item gets
  the same noise whether converted whole, padded into a longer bucket, or in pieces."""
  n_blocks = -(-frames // NOISE_BLOCK)
  blocks = start_frame // NOISE_BLOCK + jnp.arange(n_blocks)
  noise = jax.vmap(lambda b: noise_block(key, b, channels, dtype))(blocks)
  return noise.reshape(-1, channels)[:frames]


def noise_block(key, block, channels: int, dtype=jnp.float32):
  """Block `block` of an item's noise, [NOISE_BLOCK, channels]: the one draw both the unpacked
  (`frame_noise`) and the packed (`packed_noise`) paths make, so they agree frame for frame."""
  return jax.random.normal(jax.random.fold_in(key, block), (NOISE_BLOCK, channels), dtype)


@functools.partial(jax.jit, static_argnames="config",
                   compiler_options=compiler.INFERENCE)
def extract_se(params, audio, lengths, *, config: ConverterConfig):
  """Jitted: waveforms [B, F * hop + n_fft] (zero-padded), lengths [B] in samples ->
  embeddings [B, gin]."""
  spec, frame_lengths = audio_to_spec(audio, lengths, config)
  return ToneColorConverterModel(config).apply(params, spec, frame_lengths,
                                               method=ToneColorConverterModel.extract_se)


def convert(params, spec, lengths, src_se, tgt_se, tau, key, *, config: ConverterConfig,
            start_frames=None):
  """Convert spectrograms [B, T, F] (frame lengths [B]) from src_se to tgt_se ([B, gin] each).

  tau is the posterior sampling temperature (0 = deterministic). key seeds that noise: one key,
  or one per item ([B] keys); item b's noise depends only on its own key and absolute frame
  index (start_frames[b] + t, multiples of NOISE_BLOCK for pieces of long inputs), so a batch
  gives each item what converting it alone gives.
  Returns waveforms [B, T * hop]; item b is valid up to lengths[b] * hop.
  """
  batch, frames = spec.shape[:2]
  keys = jax.random.split(key, batch) if key.ndim == 0 else key
  start_frames = jnp.zeros(batch, jnp.int32) if start_frames is None else start_frames
  noise = jax.vmap(lambda k, s: frame_noise(k, s, frames, config.inter_channels, spec.dtype))(
      keys, start_frames)
  audio, *_ = ToneColorConverterModel(config).apply(
      params, spec, lengths, src_se, tgt_se, tau, noise,
      method=ToneColorConverterModel.voice_conversion)
  return audio


def packed_noise(slot_keys, noise_blocks, noise_index, channels: int, dtype=jnp.float32):
  """The N(0, 1) noise of a packed row, equal frame for frame to what `frame_noise` gives each
  utterance on its own: block j of row b is block noise_blocks[b, j, 1] of the utterance in slot
  noise_blocks[b, j, 0] (whose key is slot_keys[b, slot]); frame t takes position
  noise_index[b, t] of the row's blocks laid end to end. Shapes: slot_keys [B, S] keys,
  noise_blocks [B, NB, 2], noise_index [B, T] -> [B, T, channels]."""
  def row(keys, blocks, index):
    draw = lambda slot, b: noise_block(keys[slot], b, channels, dtype)
    noise = jax.vmap(draw)(blocks[:, 0], blocks[:, 1]).reshape(-1, channels)
    return noise[index]
  return jax.vmap(row)(slot_keys, noise_blocks, noise_index)


@functools.partial(jax.jit, static_argnames=("config", "dtype"),
                   compiler_options=compiler.INFERENCE)
def convert_packed(params, rows, segments, src_se, tgt_se, tau, slot_keys, noise_blocks,
                   noise_index, *, config: ConverterConfig, dtype=None):
  """Jitted: packed rows of several utterances (see `ovjax.packing`) -> waveforms [B, T * hop].

  rows [B, T * hop + n_fft]: each utterance reflect-padded and placed at its frame offset;
  segments [B, T]: the slot of the utterance each frame belongs to (-1 in the gaps);
  src_se / tgt_se [B, S, gin]: each slot's embeddings; slot_keys, noise_blocks, noise_index:
  each slot's noise (see `packed_noise`). Every utterance comes out as converting it alone
  gives: the gaps are wider than any single layer reaches and every layer's input is masked.
  dtype: the network's compute dtype (params must already be cast to it); the STFT stays
  float32 (XLA has no bfloat16 FFT) and the output is float32.
  """
  frames = segments.shape[1]
  spec = framed_spectrogram(rows, frames, config.filter_length, config.hop_length,
                            config.win_length)
  mask = (segments >= 0).astype(spec.dtype)[..., None]
  slot = jnp.maximum(segments, 0)[..., None]
  g_src = jnp.take_along_axis(src_se, slot, axis=1)
  g_tgt = jnp.take_along_axis(tgt_se, slot, axis=1)
  if dtype is not None:  # Every layer computes in its input's dtype.
    spec, mask, g_src, g_tgt, tau = (x.astype(dtype) for x in (spec, mask, g_src, g_tgt, tau))
  # Drawn in float32 and rounded, so a bfloat16 run samples the same noise as float32.
  noise = packed_noise(slot_keys, noise_blocks, noise_index, config.inter_channels
                       ).astype(spec.dtype)
  audio, *_ = ToneColorConverterModel(config).apply(
      params, spec * mask, mask, g_src, g_tgt, tau, noise,
      method=ToneColorConverterModel.voice_conversion_masked)
  return audio.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames="config",
                   compiler_options=compiler.INFERENCE)
def convert_audio(params, audio, lengths, src_se, tgt_se, tau, key, offsets=None,
                  start_frames=None, *, config: ConverterConfig):
  """Jitted end to end: waveforms [B, F * hop + n_fft], lengths [B] in samples -> (converted
  [B, F * hop], valid output samples [B]).

  For a piece of a long item, row b holds the item's samples from offsets[b] on, lengths[b] is
  the whole item's length and start_frames[b] the piece's first frame (see `linear_spectrogram`).
  """
  spec, frame_lengths = audio_to_spec(audio, lengths, config, offsets, start_frames)
  out = convert(params, spec, frame_lengths, src_se, tgt_se, tau, key, config=config,
                start_frames=start_frames)
  return out, frame_lengths * config.hop_length
