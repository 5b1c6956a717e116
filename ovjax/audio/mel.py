"""The 80-bin log-mel spectrogram of VITS' training loss (`spec_to_mel_torch`,
`mel_spectrogram_torch`): librosa's Slaney filterbank over the linear magnitude spectrogram,
natural log of max(x, 1e-5)."""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from ovjax.audio.spectrogram import linear_spectrogram


@functools.lru_cache(maxsize=8)
def mel_filterbank(sampling_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
  """[n_fft // 2 + 1, n_mels] (transposed for spec @ filterbank), float32."""
  import librosa  # Deferred: librosa is slow to import and only this needs it.
  fb = librosa.filters.mel(sr=sampling_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
  out = np.ascontiguousarray(fb.T, dtype=np.float32)
  out.setflags(write=False)
  return out


def spec_to_log_mel(spec, filterbank):
  """Linear magnitude [..., T, F] -> log-mel [..., T, n_mels] (float32)."""
  mel = jnp.matmul(spec.astype(jnp.float32), filterbank, precision="highest")
  return jnp.log(jnp.maximum(mel, 1e-5))


def log_mel(audio, lengths, config):
  """Waveforms [B, N] (lengths in samples) -> log-mel [B, N // hop, n_mels], as VITS computes the
  generated segment's mel (reflect padding at each item's length, center=False)."""
  spec, _ = linear_spectrogram(audio, lengths, config.filter_length, config.hop_length,
                               config.win_length)
  return spec_to_log_mel(spec, config_filterbank(config))


def config_filterbank(config) -> np.ndarray:
  return mel_filterbank(config.sampling_rate, config.filter_length, config.n_mel_channels,
                        config.mel_fmin, config.mel_fmax)
