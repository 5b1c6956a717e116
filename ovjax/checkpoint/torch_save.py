"""Writing PyTorch `.pth` files (the zip format of `torch.save`) without torch.

The archive is laid out byte for byte the way torch's own (miniz) writer lays it out: stored
members, each payload aligned to 64 bytes by an `FB` padding field, a data descriptor after each
non-empty payload. torch can compute storage offsets from that layout instead of reading them
(`calculate_storage_offsets`, meta-device loads), so a different layout would load wrong bytes.
The pickle names only the globals `torch.load(weights_only=True)` allows.
"""
from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from ovjax.errors import CheckpointError
from ovjax.fileio import atomic_output

_ALIGNMENT = 64
_MAX32 = 0xFFFFFFFF  # Without ZIP64, no offset or size may reach this.


class _Global:
  """A torch global by name; pickled as a GLOBAL opcode, so torch is never imported."""

  __slots__ = ("module", "name")

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle insists that a reduce function be callable.
    raise TypeError(f"{self.module}.{self.name} is a name, not a function")


_REBUILD_TENSOR_V2 = _Global("torch._utils", "_rebuild_tensor_v2")
_STORAGE_TYPES = {np.dtype(dtype): _Global("torch", name) for dtype, name in [
  (np.float32, "FloatStorage"), (np.float64, "DoubleStorage"), (np.float16, "HalfStorage"),
  (ml_dtypes.bfloat16, "BFloat16Storage"), (np.int64, "LongStorage"), (np.int32, "IntStorage"),
  (np.int16, "ShortStorage"), (np.int8, "CharStorage"), (np.uint8, "ByteStorage"),
  (np.bool_, "BoolStorage")]}
_PLAIN = (dict, collections.OrderedDict, list, tuple, str, int, float, bool, type(None), _Global)
# numpy scalars (np.float32(lr), a step counter) are saved as the Python numbers they hold.
_NUMPY_SCALARS = tuple({d.type for d in _STORAGE_TYPES} | {np.uint16, np.uint32, np.uint64})


class _Storage:
  """One array's bytes, saved as the archive member `data/<key>`."""

  __slots__ = ("key", "array")

  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Pickler(pickle._Pickler):
  """Protocol-2 pickler of containers, scalars and arrays, as torch pickles them.

  The pure-Python pickler, because only its dispatch table can emit a GLOBAL for a name that
  cannot be imported.
  """

  dispatch = dict(pickle._Pickler.dispatch)

  def __init__(self, file):
    super().__init__(file, protocol=2)
    self.storages: list[_Storage] = []

  def persistent_id(self, obj):
    if not isinstance(obj, _Storage):
      return None
    array = obj.array
    return ("storage", _STORAGE_TYPES[array.dtype], obj.key, "cpu", array.size)

  def reducer_override(self, obj):
    if isinstance(obj, np.ndarray):
      return self._tensor(obj)
    if type(obj) is dict and any(isinstance(v, np.ndarray) for v in obj.values()):
      return collections.OrderedDict, (), None, None, iter(obj.items())  # As a state_dict is.
    if type(obj) in _PLAIN or type(obj) in _NUMPY_SCALARS or obj is collections.OrderedDict:
      return NotImplemented
    raise CheckpointError(f"type {type(obj).__name__} is not supported (only dicts, lists, tuples, "
                          "str, int, float, bool, None and numeric numpy arrays)")

  def _tensor(self, array: np.ndarray):
    little = array.dtype.newbyteorder("<")
    if little not in _STORAGE_TYPES:
      raise CheckpointError(f"arrays of dtype {array.dtype} are not supported (torch has no "
                            "storage type for them)")
    data = np.array(array, dtype=little, order="C", copy=None)  # A no-op when already so.
    storage = _Storage(str(len(self.storages)), data)
    self.storages.append(storage)
    # torch's contiguous strides: sizes of the trailing axes, a zero size counted as one.
    strides = tuple(math.prod(max(n, 1) for n in data.shape[i + 1:]) for i in range(data.ndim))
    return _REBUILD_TENSOR_V2, (storage, 0, data.shape, strides, False,
                                collections.OrderedDict())

  def _save_global_name(self, obj: _Global):
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    self.memoize(obj)

  def _save_python_number(self, obj):
    self.save(obj.item())

  dispatch[_Global] = _save_global_name
  dispatch.update(dict.fromkeys(_NUMPY_SCALARS, _save_python_number))


class _ZipWriter:
  """Appends stored members to a file, then its central directory, as miniz does."""

  def __init__(self, file):
    self._file = file
    self._entries: list[tuple[bytes, int, int, int, int]] = []  # name, flags, crc, size, offset

  def add(self, name: str, data) -> None:
    data = memoryview(data).cast("B")
    raw_name, offset, size = name.encode(), self._file.tell(), data.nbytes
    start = offset + 30 + len(raw_name) + 4
    padding = -start % _ALIGNMENT
    extra = b"FB" + struct.pack("<H", padding) + b"Z" * padding
    if start + padding + size + 16 >= _MAX32:
      raise CheckpointError("the archive would pass 4 GiB, more than this writer supports")
    flags = 0x0800 | (0x0008 if size else 0)  # UTF-8 names; sizes follow non-empty payloads.
    crc = zlib.crc32(data)
    self._file.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0,
                                 len(raw_name), len(extra)) + raw_name + extra)
    self._file.write(data)
    if size:
      self._file.write(struct.pack("<IIII", 0x08074B50, crc, size, size))
    self._entries.append((raw_name, flags, crc, size, offset))

  def serialization_id(self) -> bytes:
    """40 digits derived from the record names and contents, like torch's (which no reader
    checks); the same checkpoint saved twice gives the same bytes."""
    names = zlib.crc32(b"\0".join(e[0] for e in self._entries))
    crcs = zlib.crc32(struct.pack(f"<{len(self._entries)}I", *(e[2] for e in self._entries)))
    return f"{names:020d}{crcs:020d}".encode()

  def finish(self) -> None:
    directory = self._file.tell()
    for raw_name, flags, crc, size, offset in self._entries:
      self._file.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, flags, 0, 0, 0,
                                   crc, size, size, len(raw_name), 0, 0, 0, 0, 0, offset))
      self._file.write(raw_name)
    end = self._file.tell()
    if end >= _MAX32 or len(self._entries) >= 0xFFFF:
      raise CheckpointError("the archive would pass 4 GiB or 65535 members, more than this "
                            "writer supports")
    count, size = len(self._entries), end - directory
    # miniz always adds the ZIP64 end records (and its locator) before the classic one.
    self._file.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, count, count,
                                 size, directory))
    self._file.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
    self._file.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, size, directory, 0))


def save_pth(path, obj: Any) -> None:
  """Writes `obj` (dicts, lists, tuples, scalars, numpy arrays) as `torch.save` would, atomically.

  Arrays become contiguous CPU tensors; dicts that hold arrays become OrderedDicts (state_dicts);
  numpy scalars become Python numbers. Anything else is a `CheckpointError`, and no file is left.
  """
  path = Path(path)
  buffer = io.BytesIO()
  pickler = _Pickler(buffer)
  try:
    pickler.dump(obj)  # Before any file is touched: a bad object leaves nothing behind.
    # torch names the archive's folder after the file, or "archive" when the name is not ASCII.
    prefix = path.stem if path.stem.isascii() else "archive"
    records = [("data.pkl", buffer.getvalue()), (".format_version", b"1"),
               (".storage_alignment", str(_ALIGNMENT).encode()), ("byteorder", b"little")]
    records += [(f"data/{s.key}", s.array.reshape(-1).view(np.uint8)) for s in pickler.storages]
    records.append(("version", b"3\n"))
    with atomic_output(path) as tmp, open(tmp, "wb") as file:
      writer = _ZipWriter(file)
      for name, data in records:
        writer.add(f"{prefix}/{name}", data)
      writer.add(f"{prefix}/.data/serialization_id", writer.serialization_id())
      writer.finish()
  except CheckpointError as err:
    raise CheckpointError(f"cannot write '{path}': {err}") from None
  except (OSError, RecursionError) as err:
    raise CheckpointError(f"cannot write '{path}': {type(err).__name__}: {err}") from None


def save_state_dict(path, state_dict, **extra) -> None:
  """Writes `{"model": state_dict, **extra}`, the layout of official OpenVoice checkpoints (VITS'
  `G_*.pth` add `iteration`, `learning_rate` and `optimizer`)."""
  if not isinstance(state_dict, dict):
    raise CheckpointError(f"cannot write '{path}': a state_dict is a dict of arrays, "
                          f"not a {type(state_dict).__name__}")
  for key, value in state_dict.items():
    if not isinstance(key, str) or not isinstance(value, np.ndarray):
      raise CheckpointError(f"cannot write '{path}': state_dict entry {str(key)[:80]!r} is a "
                            f"{type(value).__name__}, not a numpy array")
  if "model" in extra:
    raise CheckpointError(f"cannot write '{path}': 'model' is the state_dict's own key")
  save_pth(path, {"model": collections.OrderedDict(state_dict), **extra})
