"""Where a run's measurements go: JSON lines (`metrics.jsonl`) and TensorBoard event files.

The event file is written directly (TFRecord framing of `Event` protobufs, encoded by hand: a
handful of fields), so logging needs neither TensorFlow nor a protobuf package.
"""
from __future__ import annotations

import json
import math
import os
import socket
import struct
import time
from pathlib import Path


class JsonLines:
  """Appends one JSON object per line, flushed at once (a killed run loses nothing logged)."""

  def __init__(self, path):
    self.path = Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._file = open(self.path, "a", encoding="utf-8")

  def write(self, record: dict) -> None:
    self._file.write(json.dumps(record, sort_keys=True) + "\n")
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def read_jsonl(path) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


# -- TensorBoard ------------------------------------------------------------------------------

def _crc32c_table():
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  c = 0xFFFFFFFF
  for b in data:
    c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    b, n = n & 0x7F, n >> 7
    out.append(b | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
  return _varint(number << 3 | wire) + payload


def _bytes_field(number: int, data: bytes) -> bytes:
  return _field(number, 2, _varint(len(data)) + data)


def _event(step: int, wall_time: float, *, version: str | None = None, scalars=None) -> bytes:
  """Event{wall_time=1 (double), step=2 (int64), file_version=3 | summary=5}; Summary{value=1};
  Value{tag=1, simple_value=2 (float)}."""
  msg = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
  if version is not None:
    msg += _bytes_field(3, version.encode())
  if scalars:
    values = b"".join(
        _bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", v)))
        for tag, v in scalars.items())
    msg += _bytes_field(5, values)
  return msg


class TensorBoard:
  """Scalar summaries in `events.out.tfevents.*` under `directory`."""

  def __init__(self, directory):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self._file = open(directory / name, "ab")
    self._record(_event(0, time.time(), version="brain.Event:2"))

  def _record(self, data: bytes) -> None:
    header = struct.pack("<Q", len(data))
    self._file.write(header + struct.pack("<I", _masked_crc(header)) + data +
                     struct.pack("<I", _masked_crc(data)))
    self._file.flush()

  def scalars(self, step: int, values: dict) -> None:
    finite = {k: float(v) for k, v in values.items()
              if isinstance(v, (int, float)) and math.isfinite(v)}
    if finite:
      self._record(_event(step, time.time(), scalars=finite))

  def close(self) -> None:
    self._file.close()
