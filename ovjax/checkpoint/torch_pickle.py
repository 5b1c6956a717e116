"""Reading PyTorch `.pth` files without torch and without running code from them.

`torch.save` writes a zip archive holding a pickle (`<prefix>/data.pkl`) plus one raw member per
storage (`<prefix>/data/<key>`). A pickle can call any importable function, so `pickle.load` on a
downloaded checkpoint is remote code execution. We unpickle with an allow-list: only the handful
of globals a tensor checkpoint needs resolve, each to a stand-in written here that returns numpy
data; any other global is refused before anything is called. Every failure is a one-line
`CheckpointError` naming the file.
"""

import _compat_pickle
import collections
import io
import os
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from ovjax.errors import CheckpointError

# Pickled form of torch's legacy (pre-1.6, non-zip) magic number, the first thing in those files.
_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"

_STORAGE_DTYPES = {
  "FloatStorage": np.dtype(np.float32),
  "DoubleStorage": np.dtype(np.float64),
  "HalfStorage": np.dtype(np.float16),
  "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
  "LongStorage": np.dtype(np.int64),
  "IntStorage": np.dtype(np.int32),
  "ShortStorage": np.dtype(np.int16),
  "CharStorage": np.dtype(np.int8),
  "ByteStorage": np.dtype(np.uint8),
  "BoolStorage": np.dtype(np.bool_),
  "UntypedStorage": np.dtype(np.uint8),
}


class _Frozen:
  """Refuses attribute writes after construction: a pickle's BUILD opcode could otherwise swap
  a storage's array for one whose shape defeats the bounds check in `_rebuild_tensor`."""

  __slots__ = ()

  def __setattr__(self, key, value):
    if hasattr(self, key):
      raise AttributeError(f"{type(self).__name__} is read-only")
    object.__setattr__(self, key, value)


class _StorageType(_Frozen):
  """Stand-in for a torch storage class: only ever used as a tag inside a persistent id."""

  __slots__ = ("name", "dtype")

  def __init__(self, name: str, dtype: np.dtype):
    self.name = name
    self.dtype = dtype


class _Storage(_Frozen):
  """A storage's elements as a flat read-only numpy array."""

  __slots__ = ("data",)

  def __init__(self, data: np.ndarray):
    self.data = data


def _rebuild_tensor(storage, storage_offset, size, stride):
  """`torch._utils._rebuild_tensor`: a strided view of a storage, copied out as numpy."""
  if not isinstance(storage, _Storage):
    raise ValueError(f"tensor built from {type(storage).__name__}, not a storage")
  ints = [storage_offset, *size, *stride]
  if not all(type(v) is int and v >= 0 for v in ints) or len(size) != len(stride):
    raise ValueError(f"bad tensor geometry: offset {storage_offset}, size {size}, stride {stride}")
  data = storage.data
  # as_strided does no bounds checking, so a hostile size/stride would read arbitrary memory.
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if 0 not in size and last >= data.size:
    raise ValueError(f"tensor reaches element {last} of a {data.size}-element storage")
  if 0 in size:
    return np.zeros(size, data.dtype)
  base = data[storage_offset:]
  strides = tuple(s * data.itemsize for s in stride)
  view = np.lib.stride_tricks.as_strided(base, shape=tuple(size), strides=strides, writeable=False)
  return np.array(view, order="C")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  """`torch._utils._rebuild_tensor_v2`; autograd flags, hooks and metadata are irrelevant here."""
  del requires_grad, backward_hooks, metadata
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  """`torch._utils._rebuild_parameter(_with_state)`: an `nn.Parameter` is just its tensor."""
  del requires_grad, backward_hooks, state
  if not isinstance(data, np.ndarray):
    raise ValueError(f"parameter wraps {type(data).__name__}, not a tensor")
  return data


def _get_layout(name):
  """`torch.serialization._get_layout`: layouts are only names to us."""
  return str(name)


_ALLOWED: dict[tuple[str, str], Any] = {
  ("collections", "OrderedDict"): collections.OrderedDict,
  ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
  ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
  ("torch.serialization", "_get_layout"): _get_layout,
  ("torch", "strided"): "torch.strided",
}
for _name, _dtype in _STORAGE_DTYPES.items():
  # Tensors saved from a GPU with torch < 1.13 name torch.cuda.*Storage; the bytes are the same.
  for _module in ("torch", "torch.cuda", "torch.storage"):
    _ALLOWED[(_module, _name)] = _StorageType(_name, _dtype)


class _Unpickler(pickle.Unpickler):
  """Resolves only allow-listed globals; storages come from the archive's `data/` members."""

  def __init__(self, file, path: str, archive: zipfile.ZipFile, prefix: str, byteorder: str):
    super().__init__(file)
    self._path, self._archive, self._prefix, self._byteorder = path, archive, prefix, byteorder
    self._storages: dict[str, _Storage] = {}

  def find_class(self, module, name):
    # Protocol-2 pickles name Python 2 modules (__builtin__, commands); pickle maps them the same.
    if (module, name) in _compat_pickle.NAME_MAPPING:
      module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
      module = _compat_pickle.IMPORT_MAPPING[module]
    found = _ALLOWED.get((module, name))
    if found is None:
      raise CheckpointError(f"refusing to load '{self._path}': it references {module}.{name}, "
                            "which a checkpoint must not")
    return found

  def persistent_load(self, pid):
    if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
        or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
        or type(pid[4]) is not int or pid[4] < 0):
      raise CheckpointError(f"'{self._path}' is not a valid torch checkpoint: "
                            f"unexpected persistent id {str(pid)[:80]!r}")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if key not in self._storages:
      self._storages[key] = _Storage(self._read_storage(key, storage_type.dtype, numel))
    return self._storages[key]

  def _read_storage(self, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
    member = f"{self._prefix}/data/{key}"
    try:
      info = self._archive.getinfo(member)
    except KeyError:
      raise CheckpointError(f"'{self._path}' is damaged: storage {member} is missing") from None
    need = numel * dtype.itemsize
    if info.file_size < need:
      raise CheckpointError(f"'{self._path}' is damaged: storage {member} holds {info.file_size} "
                            f"bytes, expected {need}")
    with self._archive.open(info) as f:
      raw = f.read(need)
    if len(raw) != need:
      raise CheckpointError(f"'{self._path}' is damaged: storage {member} is truncated")
    if dtype.itemsize == 1:
      return np.frombuffer(raw, dtype)
    # Byte-swap as unsigned ints so it also works for bfloat16, then reinterpret.
    order = ">" if self._byteorder == "big" else "<"
    words = np.frombuffer(raw, np.dtype(f"u{dtype.itemsize}").newbyteorder(order))
    return words.astype(np.dtype(f"u{dtype.itemsize}")).view(dtype)


def _check_plain(path: str, obj: Any) -> None:
  """Rejects anything but containers, scalars, strings and numeric arrays in the result."""
  seen, todo = set(), [obj]
  while todo:
    item = todo.pop()
    if id(item) in seen:
      continue
    seen.add(id(item))
    if isinstance(item, dict):
      todo.extend(item.keys())
      todo.extend(item.values())
    elif isinstance(item, (list, tuple, set, frozenset)):
      todo.extend(item)
    elif isinstance(item, np.ndarray):
      if item.dtype.hasobject:
        raise CheckpointError(f"'{path}' holds an object array, which a checkpoint must not")
    elif item is not None and not isinstance(item, (bool, int, float, complex, str, bytes)):
      raise CheckpointError(f"'{path}' holds an unsupported {type(item).__name__} object")


def _one_line(err: BaseException) -> str:
  text = " ".join(str(err).split())
  return f"{type(err).__name__}: {text}" if text else type(err).__name__


def load_pth(path) -> Any:
  """Loads a zip-format `torch.save` file as dicts/lists/tuples/scalars and numpy arrays."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      head = f.read(64)
  except OSError as err:
    raise CheckpointError(f"cannot read checkpoint '{path}': {_one_line(err)}") from None
  if not head:
    raise CheckpointError(f"'{path}' is empty, not a PyTorch checkpoint")
  if _LEGACY_MAGIC in head[:20]:
    raise CheckpointError(f"'{path}' uses PyTorch's legacy (pre-1.6) format, which is not "
                          "supported; re-save it with torch >= 1.6: "
                          "torch.save(torch.load(path), path)")
  if not head.startswith(b"PK"):
    raise CheckpointError(f"'{path}' is not a PyTorch checkpoint (not a zip archive)")
  try:
    with zipfile.ZipFile(path) as archive:
      pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
      if len(pickles) != 1:
        raise CheckpointError(f"'{path}' is a zip archive but not a torch.save checkpoint "
                              "(no <name>/data.pkl)")
      prefix = pickles[0][:-len("/data.pkl")]
      byteorder = "little"
      if f"{prefix}/byteorder" in archive.namelist():
        byteorder = archive.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
          raise CheckpointError(f"'{path}' has an unknown byte order {byteorder[:20]!r}")
      data = archive.read(pickles[0])
      obj = _Unpickler(io.BytesIO(data), path, archive, prefix, byteorder).load()
  except CheckpointError:
    raise
  except zipfile.BadZipFile as err:
    raise CheckpointError(f"'{path}' is a damaged or truncated zip archive "
                          f"({_one_line(err)})") from None
  except Exception as err:  # Any parse failure of untrusted bytes is the file's fault.
    raise CheckpointError(f"'{path}' is a malformed torch checkpoint ({_one_line(err)})") from None
  _check_plain(path, obj)
  return obj


def load_state_dict(path) -> dict[str, np.ndarray]:
  """Loads a `{"model": state_dict}` checkpoint (or a bare state_dict) as name -> array."""
  obj = load_pth(path)
  if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
    obj = obj["model"]
  if not isinstance(obj, dict):
    raise CheckpointError(f"'{path}' holds a {type(obj).__name__}, not a state_dict")
  if not obj:
    raise CheckpointError(f"'{path}' holds no tensors")
  for key, value in obj.items():
    if not isinstance(key, str) or not isinstance(value, np.ndarray):
      raise CheckpointError(f"'{path}' is not a state_dict: entry {str(key)[:80]!r} is a "
                            f"{type(value).__name__}, not a tensor")
  return dict(obj)


def load_tensor(path) -> np.ndarray:
  """Loads a file holding one saved tensor (e.g. a tone-colour embedding `se.pth`)."""
  obj = load_pth(path)
  if not isinstance(obj, np.ndarray):
    raise CheckpointError(f"'{path}' holds a {type(obj).__name__}, not a single tensor")
  return obj

