"""Linear magnitude spectrogram exactly as OpenVoice computes it (`spectrogram_torch`).

Reflect-pad (n_fft - hop) / 2 samples on both sides of each item (at its own length), periodic
Hann window, `center=False`, |X| = sqrt(re^2 + im^2 + 1e-6). An item of n samples has n // hop
frames.
"""
import jax
import jax.numpy as jnp
import numpy as np


def num_frames(num_samples, hop_length: int = 256):
  return num_samples // hop_length


def hann_window(win_length: int) -> np.ndarray:
  """Periodic Hann window (torch.hann_window's default)."""
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)).astype(np.float32)


def linear_spectrogram(audio: jax.Array, lengths: jax.Array, n_fft: int = 1024,
                       hop_length: int = 256, win_length: int = 1024, frames: int | None = None,
                       offsets: jax.Array | None = None, start_frames: jax.Array | None = None):
  """audio [B, N] (zero-padded), lengths [B] in samples -> (spec [B, frames, n_fft//2 + 1],
  frame lengths [B]); frames defaults to N // hop. Frames past an item's own length are zero.

  A long item can be processed in pieces: row b then holds the item's samples from offsets[b] on
  (lengths[b] is still the whole item's length, which the reflection at its end needs), and its
  frames start at frame start_frames[b]. A piece of F frames starting at frame s reads samples
  s*hop - (n_fft-hop)/2 to (s+F)*hop + (n_fft+hop)/2 - 1 (clipped to the item)."""
  batch, n = audio.shape
  frames = n // hop_length if frames is None else frames
  offsets = jnp.zeros(batch, jnp.int32) if offsets is None else offsets
  start_frames = jnp.zeros(batch, jnp.int32) if start_frames is None else start_frames
  pad = (n_fft - hop_length) // 2
  # Sample index (in the whole item) each window position reads, reflected at the item's edges.
  frame_index = start_frames[:, None, None] + jnp.arange(frames)[None, :, None]
  pos = frame_index * hop_length + jnp.arange(n_fft)[None, None, :] - pad
  last = (lengths - 1)[:, None, None]
  pos = jnp.abs(pos)
  pos = jnp.where(pos > last, 2 * last - pos, pos)
  pos = jnp.clip(pos - offsets[:, None, None], 0, n - 1)
  windows = jnp.take_along_axis(audio[:, None, :], pos.reshape(batch, 1, -1), axis=2)
  windows = windows.reshape(batch, frames, n_fft)
  frame_lengths = jnp.clip(lengths // hop_length - start_frames, 0, frames)
  valid = jnp.arange(frames)[None, :] < frame_lengths[:, None]
  return _magnitude(windows, n_fft, win_length) * valid[..., None], frame_lengths


def framed_spectrogram(rows: jax.Array, frames: int, n_fft: int = 1024, hop_length: int = 256,
                       win_length: int = 1024) -> jax.Array:
  """rows [B, >= (frames - 1) * hop + n_fft] whose items are already reflect-padded (see
  `ovjax.packing`) -> magnitudes [B, frames, n_fft//2 + 1]; frame t reads samples
  t*hop ... t*hop + n_fft - 1. The same windows give the same numbers as `linear_spectrogram`."""
  pos = jnp.arange(frames)[:, None] * hop_length + jnp.arange(n_fft)[None, :]
  return _magnitude(rows[:, pos], n_fft, win_length)


def _magnitude(windows: jax.Array, n_fft: int, win_length: int) -> jax.Array:
  """|rfft(windows * Hann)| over the last axis, with the reference's 1e-6 under the root."""
  window = np.zeros(n_fft, np.float32)
  offset = (n_fft - win_length) // 2
  window[offset:offset + win_length] = hann_window(win_length)
  spectrum = jnp.fft.rfft(windows * window, axis=-1)
  return jnp.sqrt(jnp.real(spectrum)**2 + jnp.imag(spectrum)**2 + 1e-6)
