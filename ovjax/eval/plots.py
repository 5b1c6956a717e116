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
