"""Mel-spectrogram pictures (PNG, matplotlib's Agg backend: no screen needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ovjax.fileio import atomic_output


def save_mel_png(path, mels: dict, sampling_rate: int, hop_length: int, title: str = "") -> None:
  """Log-mels [frames, n_mels] side by side, one panel each, titled by their dict keys."""
  import matplotlib  # Deferred: slow to import, and only pictures need it.
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n = len(mels)
  fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
  low = min(float(np.min(m)) for m in mels.values())
  high = max(float(np.max(m)) for m in mels.values())
  for ax, (name, mel) in zip(axes[0], mels.items()):
    mel = np.asarray(mel)
    seconds = mel.shape[0] * hop_length / sampling_rate
    im = ax.imshow(mel.T, origin="lower", aspect="auto", vmin=low, vmax=high,
                   extent=(0, seconds, 0, mel.shape[1]), cmap="magma")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel bin")
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="log mel")
  if title:
    fig.suptitle(title, fontsize=10)
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  with atomic_output(path) as tmp:
    fig.savefig(tmp, format="png", dpi=80)
  plt.close(fig)


def log_mel_of(wave: np.ndarray, sampling_rate: int, n_mels: int = 80) -> np.ndarray:
  """A waveform's natural-log mel spectrogram [frames, n_mels] for pictures (hop 256)."""
  import librosa
  mel = librosa.feature.melspectrogram(y=np.asarray(wave, np.float32), sr=sampling_rate,
                                       n_fft=1024, hop_length=256, n_mels=n_mels)
  return np.log(np.maximum(mel, 1e-5)).T


def save_training_curve(path, rows, keys=("loss_mel", "loss_kl", "loss_fm", "loss_gen",
                                          "loss_disc"), title: str = "") -> None:
  """Loss curves from metrics.jsonl rows (each with a "step"), one panel per key."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  keys = [k for k in keys if any(k in r for r in rows)]
  fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
  for ax, key in zip(axes[0], keys):
    points = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
    ax.plot([p[0] for p in points], [p[1] for p in points], lw=1)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  with atomic_output(path) as tmp:
    fig.savefig(tmp, format="png", dpi=80)
  plt.close(fig)
