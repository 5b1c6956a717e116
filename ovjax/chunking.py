"""Long inputs in bounded memory: pieces with context covering the converter's receptive field,
cross-faded back together.

The converter's output at a frame depends on input frames within about +-110 of it (posterior
encoder +-32, flow forward and inverse +-64, decoder +-13). A piece that carries CONTEXT >= that
many extra frames on each side therefore reproduces the single-pass output on its core exactly
(noise is indexed by absolute frame, see `converter.frame_noise`); the short cross-fade between
neighbouring cores only hides float rounding.
"""
from __future__ import annotations

import dataclasses

import numpy as np

CONTEXT = 128   # Frames of context each side (> the receptive field's ~110).
FADE = 16       # Frames of cross-fade between neighbouring pieces.
ALIGN = 32      # Pieces start on multiples of this (the noise block).


@dataclasses.dataclass(frozen=True)
class Piece:
  """Frames [start, start + frames) of item `item`; frames [keep_start, keep_end) of the item
  are taken from this piece's output (with fades at inner edges)."""
  item: int
  start: int
  frames: int
  keep_start: int
  keep_end: int


def plan_pieces(item: int, total_frames: int, max_frames: int) -> list[Piece]:
  """One piece if the item fits in max_frames, else cores of max_frames - 2 * CONTEXT frames."""
  if total_frames <= max_frames:
    return [Piece(item, 0, total_frames, 0, total_frames)]
  core = max_frames - 2 * CONTEXT
  assert core > 2 * FADE and core % ALIGN == 0 and CONTEXT % ALIGN == 0, max_frames
  pieces = []
  for a in range(0, total_frames, core):
    b = min(a + core, total_frames)
    start, end = max(a - CONTEXT, 0), min(b + CONTEXT, total_frames)
    keep_start = a - FADE if a > 0 else 0
    keep_end = b + FADE if b < total_frames else total_frames
    pieces.append(Piece(item, start, end - start, keep_start, keep_end))
  return pieces


def piece_samples(audio: np.ndarray, piece: Piece, hop: int, n_fft: int) -> tuple[np.ndarray, int]:
  """The samples a piece's spectrogram reads, and the item offset of the first one."""
  offset = max(piece.start * hop - (n_fft - hop) // 2, 0)
  return audio[offset:offset + piece.frames * hop + n_fft], offset


class Assembler:
  """Accumulates piece outputs into an item's waveform, cross-fading where pieces overlap."""

  def __init__(self, total_frames: int, hop: int):
    self.hop = hop
    self.total = total_frames * hop
    self.out = np.zeros(self.total, np.float32)
    self.weight = np.zeros(self.total, np.float32)

  def add(self, piece: Piece, output: np.ndarray) -> None:
    """output: the piece's waveform (its frames * hop samples)."""
    lo, hi = piece.keep_start * self.hop, piece.keep_end * self.hop
    segment = output[lo - piece.start * self.hop:hi - piece.start * self.hop]
    ramp = np.ones(hi - lo, np.float32)
    fade = FADE * self.hop * 2  # The overlap of two neighbours' kept regions.
    if piece.keep_start > 0:
      ramp[:fade] = np.linspace(0, 1, fade + 2, dtype=np.float32)[1:-1]
    if piece.keep_end * self.hop < self.total:
      ramp[-fade:] = np.minimum(ramp[-fade:], np.linspace(1, 0, fade + 2, dtype=np.float32)[1:-1])
    self.out[lo:hi] += segment * ramp
    self.weight[lo:hi] += ramp

  def result(self) -> np.ndarray:
    """The waveform (computed in place: an hour of audio is 300 MB per copy)."""
    np.maximum(self.weight, 1e-12, out=self.weight)
    np.divide(self.out, self.weight, out=self.out)
    self.weight = None
    return self.out
