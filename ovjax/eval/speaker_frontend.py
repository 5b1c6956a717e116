"""resemblyzer's front end in NumPy: 16 kHz audio, volume and silence normalisation, mel partials.

Each step repeats resemblyzer 0.1.4 (`audio.py`, `voice_encoder.py`) operation for operation,
including float32 arithmetic, so that the encoder sees the same numbers:

* `preprocess_wav`: resample to 16 kHz (librosa, soxr "HQ", the default of librosa 0.11 and
  1.0), raise (never lower) the level to -30 dBFS, cut silences longer than ~0.2 s (webrtcvad).
* `wav_to_mel`: power (not log) mel spectrogram, 25 ms Hann window, 10 ms hop, 40 bands.
* `partial_slices` / `partial_mels`: 1.6 s (160-frame) windows, 1.3 per second, the last kept
  only when at least 75% of it is audio.
"""
from __future__ import annotations

import librosa
import numpy as np
import webrtcvad

from ovjax.errors import AudioError

SAMPLE_RATE = 16000
MEL_BANDS = 40
N_FFT = 400                # 25 ms
HOP = 160                  # 10 ms
PARTIAL_FRAMES = 160       # 1.6 s
PARTIAL_RATE = 1.3         # partials per second
MIN_COVERAGE = 0.75
TARGET_DBFS = -30
VAD_WINDOW = 480           # 30 ms at 16 kHz, one of the three sizes webrtcvad accepts
VAD_SMOOTHING = 8          # windows in the moving average of the speech flags
VAD_MAX_SILENCE = 6        # windows of silence kept on each side of speech
INT16_MAX = 2**15 - 1


def normalize_volume(wav: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
  """Scales `wav` up to `target_dbfs` RMS; louder audio is returned unchanged."""
  rms = np.sqrt(np.mean((wav * INT16_MAX) ** 2))
  change_db = target_dbfs - 20 * np.log10(rms / INT16_MAX)
  if change_db < 0:
    return wav
  return wav * (10 ** (change_db / 20))


def _moving_average(flags: np.ndarray, width: int) -> np.ndarray:
  """Centred moving average over zero-padded `flags` (resemblyzer's cumulative-sum form)."""
  padded = np.concatenate((np.zeros((width - 1) // 2), flags, np.zeros(width // 2)))
  total = np.cumsum(padded, dtype=float)
  total[width:] = total[width:] - total[:-width]
  return total[width - 1:] / width


def trim_long_silences(wav: np.ndarray) -> np.ndarray:
  """Drops the audio of 30 ms windows that webrtcvad (mode 3) finds far from any speech."""
  wav = wav[:len(wav) - len(wav) % VAD_WINDOW]
  # webrtcvad reads native-endian 16-bit PCM, as resemblyzer's struct.pack("%dh") writes it.
  pcm = np.round(wav * INT16_MAX).astype(np.int16).tobytes()
  vad = webrtcvad.Vad(3)
  step = VAD_WINDOW * 2
  flags = np.array([vad.is_speech(pcm[i:i + step], SAMPLE_RATE) for i in range(0, len(pcm), step)])
  voiced = np.round(_moving_average(flags, VAD_SMOOTHING)).astype(bool)
  # resemblyzer's binary dilation: a centred structure VAD_MAX_SILENCE + 1 = 7 windows wide, so a
  # window is kept when speech lies within 3 windows of it.
  kernel = np.ones(VAD_MAX_SILENCE + 1)
  voiced = np.convolve(voiced.astype(float), kernel, mode="same") > 0
  return wav[np.repeat(voiced, VAD_WINDOW)]


def preprocess_wav(wav: np.ndarray, sample_rate: int) -> np.ndarray:
  """Mono float audio at `sample_rate` -> resemblyzer's 16 kHz, level-normalised, trimmed wav."""
  wav = np.asarray(wav, dtype=np.float32)
  if wav.ndim != 1:
    raise AudioError(f"speaker encoder needs mono audio [samples], got shape {wav.shape}")
  if wav.size == 0 or not np.any(wav):
    raise AudioError("speaker encoder got empty or silent audio")
  if not np.all(np.isfinite(wav)):
    raise AudioError("speaker encoder got audio with NaN or infinite samples")
  if sample_rate != SAMPLE_RATE:
    wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
  wav = trim_long_silences(normalize_volume(wav))
  if wav.size == 0:
    raise AudioError("speaker encoder found no speech in the audio")
  return wav


def wav_to_mel(wav: np.ndarray) -> np.ndarray:
  """16 kHz wav -> power mel spectrogram [frames, 40] float32 (frames = len // 160 + 1)."""
  mel = librosa.feature.melspectrogram(y=wav, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                       n_mels=MEL_BANDS)
  return mel.astype(np.float32).T


def partial_slices(n_samples: int, rate: float = PARTIAL_RATE,
                   min_coverage: float = MIN_COVERAGE) -> np.ndarray:
  """[n, 2] (start, stop) mel-frame ranges of the partials of an `n_samples` 16 kHz wav.

  Always at least one; a last partial covering less than `min_coverage` of its frames with
  audio is dropped. Ranges may run past the audio: callers zero-pad to the last stop * 160.
  """
  if not 0 < min_coverage <= 1:
    raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
  n_frames = int(np.ceil((n_samples + 1) / HOP))
  frame_step = int(np.round((SAMPLE_RATE / rate) / HOP))
  if not 0 < frame_step <= PARTIAL_FRAMES:
    raise ValueError(f"partial rate {rate}/s gives a step of {frame_step} frames; it must be "
                     f"1..{PARTIAL_FRAMES}")
  steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
  starts = np.arange(0, steps, frame_step)
  coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
  if coverage < min_coverage and len(starts) > 1:
    starts = starts[:-1]
  return np.stack([starts, starts + PARTIAL_FRAMES], axis=1)


def partial_mels(wav: np.ndarray, rate: float = PARTIAL_RATE, min_coverage: float = MIN_COVERAGE
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Preprocessed 16 kHz wav -> (partials [n, 160, 40], slices [n, 2], mel [frames, 40]).

  The mel is that of the wav zero-padded to cover the last partial, as resemblyzer computes it.
  """
  slices = partial_slices(len(wav), rate, min_coverage)
  padded_len = int(slices[-1, 1]) * HOP
  if padded_len >= len(wav):
    wav = np.pad(wav, (0, padded_len - len(wav)))
  mel = wav_to_mel(wav)
  partials = np.stack([mel[start:stop] for start, stop in slices])
  return partials, slices, mel
