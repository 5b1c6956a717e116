"""Several utterances per row: fixed shapes without computing on padding.

Padding each utterance to a length bucket wastes up to a third of the work (a 10 s clip, 861
frames, ran in the 1024-frame bucket). Instead, utterances (or the pieces of long ones, see
`ovjax.chunking`) are packed back to back into rows, `gap` frames apart, by first-fit
decreasing; a row is as long as its content rounded up to a fine bucket (1/16 of an octave, see
`batching.fine_bucket_frames`), at most `max_frames`. Every layer of the converter masks its input, so an
utterance sees zeros in the gaps exactly as it sees zero padding alone, as long as the gap is
wider than any single layer reaches (`min_gap`). The spectrogram is made per utterance on the
host side of the layout: each one is reflect-padded as the reference pads it and laid at its
offset, and the device reads plain windows (`framed_spectrogram`).

Everything here is host-side NumPy and needs no JAX.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from ovjax import batching, chunking

# Frames per noise block: the pieces of long items start on block boundaries (`converter`
# draws noise per block of this size).
NOISE_BLOCK = chunking.ALIGN
MAX_SEGMENTS = 16  # Utterances per row at most (a static shape of the noise and embedding tables).


@dataclasses.dataclass(frozen=True)
class Row:
  """frames: the row's length; segments: (piece index, first frame in the row) pairs."""
  frames: int
  segments: tuple[tuple[int, int], ...]


def min_gap(config) -> int:
  """Frames between two utterances so that no layer reads across from one to the other: the
  STFT window's overhang, and each conv's one-sided reach (in samples at its own rate) divided
  by that rate, over the posterior encoder, the flow and the decoder."""
  hop = config.hop_length
  reaches = [math.ceil((config.filter_length - hop) / hop)]
  for kernel, layers in ((config.posterior_kernel_size, config.posterior_layers),
                         (config.flow_kernel_size, config.flow_layers)):
    reaches.append((kernel - 1) // 2)  # dilation_rate 1 in both (OpenVoice's configs).
  reaches.append(3)  # conv_pre, kernel 7, at the frame rate.
  rate = 1
  for up_rate, up_kernel in zip(config.upsample_rates, config.upsample_kernel_sizes):
    reaches.append(math.ceil(up_kernel / up_rate))  # The transposed conv, at its input rate.
    rate *= up_rate
    for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
      reaches.append(math.ceil(max(dilations) * (k - 1) // 2 / rate))
  reaches.append(math.ceil(3 / rate))  # conv_post, kernel 7.
  return max(reaches)


def plan_rows(piece_frames: Sequence[int], max_frames: int, gap: int,
              max_segments: int = MAX_SEGMENTS) -> list[Row]:
  """Pack pieces (each <= max_frames) into rows, longest first, each into the first row with
  room for it and its gap. Rows are returned longest first."""
  order = sorted(range(len(piece_frames)), key=lambda i: -piece_frames[i])
  open_rows: list[list] = []  # [used frames, [(piece, offset)]]
  for i in order:
    n = piece_frames[i]
    if n > max_frames:
      raise ValueError(f"a piece of {n} frames does not fit rows of {max_frames}")
    for row in open_rows:
      if row[0] + gap + n <= max_frames and len(row[1]) < max_segments:
        row[1].append((i, row[0] + gap))
        row[0] += gap + n
        break
    else:
      open_rows.append([n, [(i, 0)]])
  rows = [Row(min(max_frames, batching.fine_bucket_frames(used)), tuple(segs))
          for used, segs in open_rows]
  return sorted(rows, key=lambda r: -r.frames)


def useful_fraction(piece_frames: Sequence[int], rows: Sequence[Row],
                    batch_rows: Sequence[int] | None = None) -> float:
  """Frames of content / frames computed (batch_rows: rows actually run per row, padding rows of
  a batch included; default one each)."""
  computed = sum(r.frames * (1 if batch_rows is None else batch_rows[i])
                 for i, r in enumerate(rows))
  return sum(piece_frames[p] for r in rows for p, _ in r.segments) / max(computed, 1)


def split_batches(n_rows: int, limit: int) -> list[int]:
  """Batch sizes for n_rows rows of one length: powers of two up to `limit`, largest first.
  Unlike `batching.bucket_batch`, no batch is padded up to the next power of two: padding rows
  would be computed for nothing."""
  sizes, left = [], n_rows
  top = 2**int(math.log2(max(limit, 1)))
  while left > 0:
    size = min(top, 2**int(math.log2(left)))
    sizes.append(size)
    left -= size
  return sizes


def plan_batches(piece_frames: Sequence[int], max_frames: int, gap: int, max_batch: int,
                 n_devices: int = 1, max_batch_frames: int | None = None):
  """[(rows, real row count)]: the packed rows in device batches of one row length, at most
  max_batch rows and max_batch_frames frames (per device), padded (with copies of the first
  row) only to a multiple of n_devices; the padding rows' outputs are to be dropped."""
  by_length: dict[int, list[Row]] = {}
  for row in plan_rows(piece_frames, max_frames, gap):
    by_length.setdefault(row.frames, []).append(row)
  batches = []
  for frames, same in by_length.items():
    limit = batching.batch_limit(frames, max_batch,
                                 None if max_batch_frames is None else max_batch_frames * n_devices)
    start = 0
    for size in split_batches(len(same), max(limit, n_devices)):
      batch = same[start:start + size]
      start += size
      padded = -(-size // n_devices) * n_devices
      batches.append((batch + [batch[0]] * (padded - size), size))
  return batches


def build_rows(rows: Sequence[Row], pieces: Sequence[chunking.Piece],
               waves: Sequence[np.ndarray], hop: int, n_fft: int,
               max_segments: int = MAX_SEGMENTS):
  """The arrays `converter.convert_packed` takes for these rows (all of one length T):
  audio [B, T*hop + n_fft], segments [B, T] (slot or -1), slot_items [B, S] (the item of each
  slot, for its embeddings and key; 0 where empty), noise_blocks [B, NB, 2] and noise_index
  [B, T] (see `converter.packed_noise`)."""
  frames = rows[0].frames
  assert all(r.frames == frames for r in rows)
  n_blocks = frames // NOISE_BLOCK + 2 * max_segments
  pad = (n_fft - hop) // 2
  audio = np.zeros((len(rows), frames * hop + n_fft), np.float32)
  segments = np.full((len(rows), frames), -1, np.int32)
  slot_items = np.zeros((len(rows), max_segments), np.int32)
  noise_blocks = np.zeros((len(rows), n_blocks, 2), np.int32)
  noise_index = np.zeros((len(rows), frames), np.int32)
  padded_items: dict[int, np.ndarray] = {}
  for b, row in enumerate(rows):
    block = 0
    for slot, (p, offset) in enumerate(row.segments):
      piece = pieces[p]
      if piece.item not in padded_items:  # Reflect-padded once per item (the reference's pad).
        padded_items[piece.item] = np.pad(waves[piece.item], (pad, pad), mode="reflect")
      samples = padded_items[piece.item][piece.start * hop:(piece.start + piece.frames) * hop +
                                         n_fft - hop]
      audio[b, offset * hop:offset * hop + len(samples)] = samples
      segments[b, offset:offset + piece.frames] = slot
      slot_items[b, slot] = piece.item
      # The item's noise blocks covering its frames start .. start + frames - 1.
      first, last = piece.start // NOISE_BLOCK, (piece.start + piece.frames - 1) // NOISE_BLOCK
      count = last - first + 1
      noise_blocks[b, block:block + count, 0] = slot
      noise_blocks[b, block:block + count, 1] = np.arange(first, last + 1)
      absolute = piece.start + np.arange(piece.frames)
      noise_index[b, offset:offset + piece.frames] = \
          (block + absolute // NOISE_BLOCK - first) * NOISE_BLOCK + absolute % NOISE_BLOCK
      block += count
    assert block <= n_blocks
  return audio, segments, slot_items, noise_blocks, noise_index
