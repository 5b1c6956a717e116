"""The VITS base speaker TTS of OpenVoice v1: text -> speech with a style (speaker id) and speed.

Text encoder -> durations (a mix of the stochastic and deterministic predictors) -> priors
expanded along a hard monotonic path -> sampled z_p -> inverse flow -> HiFi-GAN. The submodule
names are the reference's (`enc_p`, `sdp`, `dp`, `emb_g`, `flow`, `dec`, `enc_q`).

The output length depends on the predicted durations, so inference is two jitted stages: the
first predicts integer durations, the host picks a fixed frame bucket, the second synthesises.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import flax.linen as nn

from ovjax import compiler
from ovjax.config import BaseTTSConfig
from ovjax.layers import init
from ovjax.layers.init import fast_init
from ovjax.layers.duration import DurationPredictor, StochasticDurationPredictor
from ovjax.layers.masks import sequence_mask
from ovjax.layers.text_encoder import TextEncoder
from ovjax.models.vits import VitsCore


def item_noise(keys, shape, dtype=jnp.float32):
  """Standard-normal noise [B, *shape], item b drawn from keys[b] alone.

  With JAX's partitionable threefry (the default), element (t, c) depends only on its index, so an
  item padded to a longer bucket gets the same noise on its valid frames: batched equals
  one-by-one even with noise."""
  return jax.vmap(lambda k: jax.random.normal(k, shape, dtype))(keys)


def generate_path(durations, x_mask, y_mask):
  """Hard monotonic alignment [B, Ty, Tx]: frame t belongs to token j iff
  cumsum(d)[j-1] <= t < cumsum(d)[j]."""
  ends = jnp.cumsum(durations, axis=1)  # [B, Tx]
  starts = ends - durations
  t = jnp.arange(y_mask.shape[1], dtype=durations.dtype)[None, :, None]
  path = (t >= starts[:, None, :]) & (t < ends[:, None, :])
  return path.astype(y_mask.dtype) * y_mask * x_mask[:, None, :, 0]


class BaseSpeakerTTSModel(VitsCore):
  config: BaseTTSConfig

  @property
  def vits_config(self):
    return self.config.vits

  def setup(self):
    c, v = self.config, self.config.vits
    self.setup_core()
    self.enc_p = TextEncoder(c.n_vocab, v.inter_channels, v.hidden_channels, v.filter_channels,
                             v.n_heads, v.n_layers, v.kernel_size, v.p_dropout)
    # The reference forces the SDP's filter channels to its input width.
    self.sdp = StochasticDurationPredictor(v.hidden_channels, v.hidden_channels, c.sdp_kernel_size,
                                           c.dp_p_dropout, c.sdp_n_flows, v.gin_channels)
    self.dp = DurationPredictor(v.hidden_channels, c.dp_filter_channels, c.dp_kernel_size,
                                c.dp_p_dropout, v.gin_channels)
    # PyTorch's nn.Embedding starts at N(0, 1).
    self.emb_g = nn.Embed(c.n_speakers, v.gin_channels,
                          embedding_init=init.Normal(1.0))

  def __call__(self, ids, lengths, spec, spec_lengths, sid):
    """Touches every parameter (for init): text, durations, posterior, flow, decoder."""
    g = self.speaker(sid)
    h, m_p, logs_p, x_mask = self.enc_p(ids, lengths)
    noise = jnp.zeros((*ids.shape, 2))
    logw = self.log_durations(h, x_mask, g, noise, 0.0, 0.5)
    y_mask = sequence_mask(spec_lengths, spec.shape[1], spec.dtype)
    m_q, _ = self.posterior(spec, y_mask, g)
    z_p = self.flow_forward(m_q, y_mask, g)
    return self.decode(z_p, y_mask, g), logw

  def speaker(self, sid):
    """Style/speaker ids [B] -> g [B, 1, gin]."""
    return self.emb_g(sid)[:, None, :]

  def encode_text(self, ids, lengths, deterministic: bool = True):
    return self.enc_p(ids, lengths, deterministic)

  def log_durations(self, h, x_mask, g, sdp_noise, noise_scale_w, sdp_ratio):
    """logw [B, Tx, 1] = sdp_ratio * SDP(noise * noise_scale_w) + (1 - sdp_ratio) * DP."""
    logw_sdp = self.sdp(h, x_mask, g=g, reverse=True, noise_scale=noise_scale_w, noise=sdp_noise)
    logw_dp = self.dp(h, x_mask, g)
    return logw_sdp * sdp_ratio + logw_dp * (1.0 - sdp_ratio)

  def predict_durations(self, ids, lengths, sid, sdp_noise, noise_scale_w, sdp_ratio,
                        length_scale):
    """Integer frames per token [B, Tx] and the text-side tensors the synthesis stage needs."""
    g = self.speaker(sid)
    h, m_p, logs_p, x_mask = self.encode_text(ids, lengths)
    logw = self.log_durations(h, x_mask, g, sdp_noise, noise_scale_w, sdp_ratio)
    w_ceil = jnp.ceil(jnp.exp(logw) * x_mask * length_scale)[..., 0]
    y_lengths = jnp.maximum(jnp.sum(w_ceil, axis=1), 1).astype(jnp.int32)
    return w_ceil, y_lengths, m_p, logs_p, x_mask

  def synthesize(self, w_ceil, y_lengths, m_p, logs_p, x_mask, sid, prior_noise, noise_scale):
    """Durations and priors -> (audio [B, Ty * hop], z [B, Ty, C]); Ty = prior_noise.shape[1]."""
    g = self.speaker(sid)
    y_mask = sequence_mask(y_lengths, prior_noise.shape[1], m_p.dtype)
    path = generate_path(w_ceil, x_mask, y_mask)  # [B, Ty, Tx]
    m_frames = jnp.einsum("btx,bxc->btc", path, m_p, precision="highest")
    logs_frames = jnp.einsum("btx,bxc->btc", path, logs_p, precision="highest")
    z_p = (m_frames + prior_noise * jnp.exp(logs_frames) * noise_scale) * y_mask
    z = self.flow_reverse(z_p, y_mask, g)
    return self.decode(z * y_mask, y_mask, g), z


def _init(config: BaseTTSConfig, key: jax.Array, tokens: int = 8, frames: int = 8):
  model = BaseSpeakerTTSModel(config)
  ids = jnp.zeros((1, tokens), jnp.int32)
  spec = jnp.zeros((1, frames, config.vits.spec_channels))
  return model.init(key, ids, jnp.array([tokens]), spec, jnp.array([frames]),
                    jnp.zeros((1,), jnp.int32))


def init_params(config: BaseTTSConfig, key: jax.Array):
  """Random parameters (NumPy) in the training (weight-normed) layout, with the reference's
  initial values (PyTorch's defaults, HiFi-GAN's N(0, 0.01), zero flow projections); seconds at
  full size (see `ovjax.layers.init.fast_init`)."""
  return fast_init(functools.partial(_init, config), key)


def param_shapes(config: BaseTTSConfig):
  return jax.eval_shape(functools.partial(_init, config), jax.random.key(0))


@functools.partial(jax.jit, static_argnames="config",
                   compiler_options=compiler.INFERENCE)
def predict_durations(params, ids, lengths, sid, keys, noise_scale_w, sdp_ratio, length_scale, *,
                      config: BaseTTSConfig):
  """Jitted stage 1: ids [B, Tx] (padded), lengths [B], style ids [B], one PRNG key per item ->
  (durations [B, Tx], frame lengths [B], m_p, logs_p, x_mask)."""
  sdp_noise = item_noise(jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys), (ids.shape[1], 2))
  return BaseSpeakerTTSModel(config).apply(
      params, ids, lengths, sid, sdp_noise, noise_scale_w, sdp_ratio, length_scale,
      method=BaseSpeakerTTSModel.predict_durations)


@functools.partial(jax.jit, static_argnames=("config", "frames", "dtype"),
                   compiler_options=compiler.INFERENCE)
def synthesize(params, w_ceil, y_lengths, m_p, logs_p, x_mask, sid, keys, noise_scale, *,
               frames: int, config: BaseTTSConfig, dtype=None):
  """Jitted stage 2 for a fixed frame bucket: -> audio [B, frames * hop] (float32).

  dtype: the flow's and decoder's compute dtype (params must already be cast to it). The
  durations stay stage 1's float32 ones, and the prior noise is drawn in float32 and rounded, so
  a bfloat16 synthesis samples what the float32 one samples."""
  prior_noise = item_noise(jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
                           (frames, config.vits.inter_channels))
  if dtype is not None:  # Every layer computes in its input's dtype.
    m_p, logs_p, x_mask, prior_noise, noise_scale = (
        x.astype(dtype) for x in (m_p, logs_p, x_mask, prior_noise, noise_scale))
  audio, _ = BaseSpeakerTTSModel(config).apply(
      params, w_ceil, y_lengths, m_p, logs_p, x_mask, sid, prior_noise, noise_scale,
      method=BaseSpeakerTTSModel.synthesize)
  return audio.astype(jnp.float32)


def infer(params, ids, lengths, sid, key, noise_scale=0.667, noise_scale_w=0.6, sdp_ratio=0.2,
          length_scale=1.0, *, config: BaseTTSConfig, frames: int | None = None):
  """The reference's `SynthesizerTrn.infer`: returns (audio [B, frames * hop], frame lengths).

  key: one PRNG key, or one per item ([B]). frames: the static frame bucket; by default the
  longest item's frame count (one extra host round trip).
  """
  keys = jax.random.split(key, ids.shape[0]) if key.ndim == 0 else key
  w_ceil, y_lengths, m_p, logs_p, x_mask = predict_durations(
      params, ids, lengths, sid, keys, noise_scale_w, sdp_ratio, length_scale, config=config)
  if frames is None:
    frames = int(jnp.max(y_lengths))
  audio = synthesize(params, w_ceil, y_lengths, m_p, logs_p, x_mask, sid, keys, noise_scale,
                     frames=frames, config=config)
  return audio, y_lengths
