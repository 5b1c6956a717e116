"""Mel-cepstral distortion (MCD) with dynamic time warping, for outputs with a ground-truth target.

Mel cepstra are the DCT-II of the natural-log mel power spectrum (25 coefficients, c0 left out
so loudness does not count); the two sequences are aligned by DTW on the Euclidean distance and
MCD = (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2), in dB, averaged over the aligned path.
"""
from __future__ import annotations

import numpy as np

N_CEPSTRA = 25
_K = 10.0 / np.log(10.0) * np.sqrt(2.0)


def mel_cepstra(wave: np.ndarray, sampling_rate: int, n_cepstra: int = N_CEPSTRA,
                n_mels: int = 80) -> np.ndarray:
  """Waveform -> mel cepstra [frames, n_cepstra] (c1..c_n; 1024-point FFT, hop 256 at 22.05 kHz,
  scaled to the rate)."""
  import librosa
  import scipy.fft
  n_fft = int(2 ** np.round(np.log2(1024 * sampling_rate / 22050)))
  hop = n_fft // 4
  power = librosa.feature.melspectrogram(y=np.asarray(wave, np.float32), sr=sampling_rate,
                                         n_fft=n_fft, hop_length=hop, n_mels=n_mels, power=2.0)
  log_mel = np.log(np.maximum(power, 1e-10))
  cepstra = scipy.fft.dct(log_mel, type=2, axis=0, norm="ortho")
  return cepstra[1:n_cepstra + 1].T.astype(np.float64)


def mcd_dtw(a: np.ndarray, b: np.ndarray) -> float:
  """MCD in dB between mel-cepstra sequences a [Ta, D] and b [Tb, D], aligned by DTW."""
  import librosa
  diff = a[:, None, :] - b[None, :, :]
  cost = np.sqrt(np.sum(diff * diff, axis=-1))
  _, path = librosa.sequence.dtw(C=cost)
  return float(_K * np.mean(cost[path[:, 0], path[:, 1]]))


def mel_cepstral_distortion(output: np.ndarray, target: np.ndarray, sampling_rate: int) -> float:
  """MCD-DTW (dB) of an output waveform against a target waveform at the same rate."""
  return mcd_dtw(mel_cepstra(output, sampling_rate), mel_cepstra(target, sampling_rate))
