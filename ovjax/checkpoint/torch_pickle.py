"""Reading PyTorch `.pth` files without torch and without running code from them.

`torch.save` writes a zip archive holding a pickle (`<prefix>/data.pkl`) plus one raw member per
storage (`<prefix>/data/<key>`). A pickle can call any importable function, so `pickle.load` on a
downloaded checkpoint is remote code execution. We unpickle with an allow-list: only the handful
of globals a tensor checkpoint needs resolve, each to a stand-in written here that returns numpy
data; any other global is refused before anything is called. Every failure is a one-line
`CheckpointError` naming the file.

A small file must also never make us allocate much more than it holds, so everything is bounded
before it is allocated: each member's inflated size by its declared size (read in chunks, so a
header that lies is caught as the stream runs past it), all members together by 50x the file's
size (at most 8 GiB), data.pkl by 64 MiB, the objects its opcodes can build by 32x the file's size
plus 64 MiB, and the bytes all tensors materialise from their storages (a stride-0 or overlapping
view is a few bytes of pickle for any number of elements) by 4x the storage bytes plus 1 MiB.
"""

import _compat_pickle
import collections
import copy
import io
import math
import os
import pickle
import pickletools
import reprlib
import sys
import zipfile
import zlib
from typing import Any, Callable

import ml_dtypes
import numpy as np

from ovjax.errors import CheckpointError
from ovjax.fileio import describe_content

# Pickled form of torch's legacy (pre-1.6, non-zip) magic number, the first thing in those files.
_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"

# --- Limits on what one file may make us allocate ---------------------------------------------
# torch stores members uncompressed and float data barely deflates, so real archives inflate to
# about their own size; 50x leaves room for a re-zipped file full of zeros.
_MAX_INFLATE_RATIO = 50
_MAX_INFLATED_BYTES = 8 << 30
# Real data.pkl files take ~150 bytes per tensor (the official converter's: 68 KB).
_MAX_PICKLE_BYTES = 64 << 20
# Tied weights and saved expand()s materialise a storage more than once; 4x is plenty for those.
_MAX_VIEW_RATIO = 4
_SLACK_BYTES = 1 << 20
_READ_CHUNK = 1 << 20
# What the unpickler can build, estimated from data.pkl's opcodes before it runs: a 1-byte opcode
# can make a 216-byte set, so without a bound 64 MiB of pickle would be 14 GB of objects. Model
# checkpoints estimate at 0.5-1.2x their file; pickle-heavy files (a million floats, an optimizer
# state of thousands of tiny tensors) at 14-21x, and those really do take 11-13x.
_OBJECT_RATIO = 32
_OBJECT_SLACK = 64 << 20
# Upper bounds, in bytes, of what one opcode's result keeps alive with its slot in a container, the
# memo or a dict; the big opcodes make containers or call something.
_OP_COST, _BIG_OP_COST = 128, 256
_BIG_OPS = frozenset({"EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET", "FROZENSET", "DICT", "LIST",
                      "TUPLE", "MARK", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST", "BUILD",
                      "PERSID", "BINPERSID"})
_MAX_DIMS = 64  # numpy's own limit.
_MAX_GEOMETRY = 1 << 62  # Any size, stride or offset past this is not a real tensor's.

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _brief(value) -> str:
  """A value from the file, shown without building a huge string."""
  try:
    return _REPR.repr(value)
  except ValueError:  # An int past Python's 4300-digit str() limit.
    return f"<{type(value).__name__}>"

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
  a storage's array for one whose shape defeats the bounds check in `_Tensors.rebuild`."""

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


class _Tensors:
  """Builds one file's tensors, as `torch._utils._rebuild_tensor(_v2)`: strided views of storages,
  copied out as numpy. Each view must lie inside its storage, and all of them together may
  materialise at most `_MAX_VIEW_RATIO` times the bytes of the storages they view (plus slack):
  a stride-0 or overlapping view costs the file a few bytes for any number of elements."""

  def __init__(self, path: str, name_of: Callable[[], Any] | None = None):
    self._path = path
    self._name_of = name_of  # Best-effort name of the tensor being built, for messages.
    self._roots: dict[int, np.ndarray] = {}  # Held, so that their ids stay unique.
    self.storage_bytes = 0
    self.tensor_bytes = 0
    self._count = 0

  def _what(self) -> str:
    name = self._name_of() if self._name_of else None
    return f"tensor {name[:80]!r}" if isinstance(name, str) else f"tensor #{self._count}"

  def _note_storage(self, data: np.ndarray) -> None:
    root = data  # A storage seen through several views is counted once.
    while isinstance(root.base, np.ndarray):
      root = root.base
    if id(root) not in self._roots:
      self._roots[id(root)] = root
      self.storage_bytes += root.nbytes

  def rebuild(self, storage, storage_offset, size, stride):
    self._count += 1
    if not isinstance(storage, _Storage):
      raise ValueError(f"tensor built from {type(storage).__name__}, not a storage")
    if (not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list))
        or len(size) != len(stride) or len(size) > _MAX_DIMS
        or not all(type(v) is int and 0 <= v < _MAX_GEOMETRY
                   for v in (storage_offset, *size, *stride))):
      raise CheckpointError(f"'{self._path}' is damaged: {self._what()} has a bad geometry "
                            f"(offset {_brief(storage_offset)}, size {_brief(size)}, stride "
                            f"{_brief(stride)}; each must be a non-negative int)")
    data = storage.data
    self._note_storage(data)
    numel = math.prod(size)
    if numel:
      # as_strided does no bounds checking, so a hostile size/stride would read arbitrary memory.
      last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
      if last >= data.size:
        raise CheckpointError(f"'{self._path}' is damaged: {self._what()} view needs {last + 1} "
                              f"elements but its storage holds {data.size} (it reaches element "
                              f"{last})")
    nbytes = numel * data.itemsize
    limit = _MAX_VIEW_RATIO * self.storage_bytes + _SLACK_BYTES
    if self.tensor_bytes + nbytes > limit:
      raise CheckpointError(
          f"refusing to load '{self._path}': {self._what()} views {numel} elements of a "
          f"{data.size}-element storage, which would take its tensors to "
          f"{self.tensor_bytes + nbytes} bytes, more than {_MAX_VIEW_RATIO}x the "
          f"{self.storage_bytes} bytes of storage they come from (+{_SLACK_BYTES >> 20} MiB)")
    self.tensor_bytes += nbytes
    if not numel:
      return np.zeros(size, data.dtype)
    base = data[storage_offset:]
    # A size-1 axis's stride never moves; torch allows any, numpy's byte strides could overflow.
    strides = tuple(s * data.itemsize if n > 1 else 0 for n, s in zip(size, stride))
    view = np.lib.stride_tricks.as_strided(base, shape=tuple(size), strides=strides,
                                           writeable=False)
    return np.array(view, order="C")

  def rebuild_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                 backward_hooks=None, metadata=None):
    """`_rebuild_tensor_v2`; autograd flags, hooks and metadata are irrelevant here."""
    del requires_grad, backward_hooks, metadata
    return self.rebuild(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  """`torch._utils._rebuild_parameter(_with_state)`: an `nn.Parameter` is just its tensor."""
  del requires_grad, backward_hooks, state
  if not isinstance(data, np.ndarray):
    raise ValueError(f"parameter wraps {type(data).__name__}, not a tensor")
  return data


def _get_layout(name):
  """`torch.serialization._get_layout`: layouts are only names to us."""
  if not isinstance(name, str):  # str() of a big container, repeated, would amplify memory.
    raise ValueError(f"layout named by a {type(name).__name__}")
  return name


class _OrderedDict:
  """`collections.OrderedDict` as Python 3 pickles it: built empty, items added after. Built
  from arguments, one pickled dict could be copied any number of times."""

  def __new__(cls, *args, **kwargs):
    if args or kwargs:
      raise ValueError("OrderedDict built from arguments")
    return collections.OrderedDict()


_ALLOWED: dict[tuple[str, str], Any] = {
  ("collections", "OrderedDict"): _OrderedDict,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
  ("torch.serialization", "_get_layout"): _get_layout,
  ("torch", "strided"): "torch.strided",
}
for _name, _dtype in _STORAGE_DTYPES.items():
  # Tensors saved from a GPU with torch < 1.13 name torch.cuda.*Storage; the bytes are the same.
  for _module in ("torch", "torch.cuda", "torch.storage"):
    _ALLOWED[(_module, _name)] = _StorageType(_name, _dtype)
# These resolve to the loading file's own `_Tensors`, which keeps count of what its tensors cost.
_TENSOR_BUILDERS = {
  ("torch._utils", "_rebuild_tensor"): "rebuild",
  ("torch._utils", "_rebuild_tensor_v2"): "rebuild_v2",
}


class _AllowList:
  """`find_class` for our unpicklers: only allow-listed globals resolve. Needs `self._path`."""

  _path: str

  def find_class(self, module, name):
    # Protocol-2 pickles name Python 2 modules (__builtin__, commands); pickle maps them the same.
    if (module, name) in _compat_pickle.NAME_MAPPING:
      module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
      module = _compat_pickle.IMPORT_MAPPING[module]
    builder = _TENSOR_BUILDERS.get((module, name))
    if builder is not None:
      if "_tensors" not in vars(self):  # Subclasses with their own __init__ get theirs here.
        self._tensors = _Tensors(self._path)
      return getattr(self._tensors, builder)
    found = _ALLOWED.get((module, name))
    if found is None:
      raise CheckpointError(f"refusing to load '{self._path}': it references {module}.{name}, "
                            "which a checkpoint must not")
    return found


class _Unpickler(_AllowList, pickle.Unpickler):
  """The allow-listed C unpickler, the base of readers of other layouts (torch's legacy format in
  `ovjax.eval.speaker_encoder`). The zip reader below uses `_ArchiveUnpickler` instead."""


class _Archive:
  """A zip archive's members, each read no further than its declared size, in chunks, against one
  inflation budget for the whole file: a small zip can declare, or inflate to, any size."""

  def __init__(self, path: str, file, file_size: int):
    self.path = path
    self.zip = zipfile.ZipFile(file)
    self.left = min(_MAX_INFLATED_BYTES, _MAX_INFLATE_RATIO * file_size + _SLACK_BYTES)
    declared = sum(info.file_size for info in self.zip.infolist())
    if declared > self.left:
      raise CheckpointError(
          f"refusing to load '{path}': its members declare {declared} bytes uncompressed, more "
          f"than a {file_size}-byte file may inflate to ({self.left} bytes: "
          f"{_MAX_INFLATE_RATIO}x its size + {_SLACK_BYTES >> 20} MiB, at most "
          f"{_MAX_INFLATED_BYTES >> 30} GiB)")

  def read(self, name: str, limit: int, need: int | None = None) -> bytearray:
    """The member's bytes; at most `limit` of them, exactly `need` if given."""
    info = self.zip.getinfo(name)
    declared = info.file_size
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
      # Like torch's own reader (miniz); zipfile inflates bzip2 and lzma without an output bound.
      raise CheckpointError(f"'{self.path}' is not a torch checkpoint: member {name} uses zip "
                            f"compression method {info.compress_type}, not stored or deflate")
    if need is not None and declared != need:
      raise CheckpointError(f"'{self.path}' is damaged: member {name} declares {declared} bytes, "
                            f"but the pickle says it holds {need}")
    if declared > limit:
      raise CheckpointError(f"refusing to load '{self.path}': member {name} declares {declared} "
                            f"bytes, more than the {limit} allowed")
    if declared > self.left:
      raise CheckpointError(f"refusing to load '{self.path}': member {name} declares {declared} "
                            f"bytes, more than the {self.left} the file may still inflate to")
    # zipfile silently stops at the declared size, and checks the CRC there; asking for one byte
    # more, and checking the CRC ourselves, shows a stream that runs on.
    probe = copy.copy(info)
    probe.file_size, probe.CRC = declared + 1, None
    out, got, crc = bytearray(declared), 0, 0
    with self.zip.open(probe) as member:
      while chunk := member.read(min(_READ_CHUNK, declared + 1 - got)):
        if got + len(chunk) > declared:
          raise CheckpointError(f"refusing to load '{self.path}': member {name} inflates past "
                                f"the {declared} bytes its zip header declares")
        out[got:got + len(chunk)] = chunk
        got += len(chunk)
        crc = zlib.crc32(chunk, crc)
    if got != declared:
      raise CheckpointError(f"'{self.path}' is damaged: member {name} is truncated ({got} of "
                            f"{declared} bytes)")
    if crc != info.CRC:
      raise CheckpointError(f"'{self.path}' is damaged: member {name} fails its CRC check")
    self.left -= declared
    return out


def _pickle_cost(path: str, data: bytes, limit: int) -> int:
  """An upper bound of the bytes the objects `data` unpickles to can hold, refused past `limit`.
  genops also checks every length in the pickle against the bytes actually there."""
  cost = 0
  for opcode, arg, _ in pickletools.genops(data):
    cost += _BIG_OP_COST if opcode.name in _BIG_OPS else _OP_COST
    if opcode.name == "FRAME":
      cost += min(arg, len(data))  # The unpickler copies each frame it reads.
    elif isinstance(arg, (str, bytes, bytearray, int)):
      cost += sys.getsizeof(arg)
    if cost > limit:
      raise CheckpointError(f"refusing to load '{path}': its pickle would build more than {limit} "
                            f"bytes of objects ({_OBJECT_RATIO}x the file's size + "
                            f"{_OBJECT_SLACK >> 20} MiB)")
  return cost


class _ArchiveUnpickler(_AllowList, pickle._Unpickler):  # pylint: disable=protected-access
  """Unpickles a zip archive's data.pkl; storages come from the archive's `data/` members.

  The pure-Python unpickler, whose opcodes we can override: C's BUILD copies any state into any
  object (so a few bytes can copy a big dict again and again), and its memo is an array grown to
  the largest index the pickle names (9 bytes can make it zero 32 GiB); this one's is a dict.
  """

  dispatch = dict(pickle._Unpickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, path: str, archive: _Archive, prefix: str, byteorder: str,
               objects_left: int):
    super().__init__(file)
    self._path, self._archive, self._prefix, self._byteorder = path, archive, prefix, byteorder
    self._objects_left = objects_left  # Of the object budget, after what the opcodes cost.
    self._storages: dict[str, _Storage] = {}
    self._tensors = _Tensors(path, self._nearest_name)

  def _nearest_name(self):
    # A tensor in a state_dict is built just above its key (or its list or parameter's key).
    for level in (self.stack, *self.metastack[-1:-4:-1]):
      for item in level[-1:-5:-1]:
        if isinstance(item, str):
          return item
    return None

  def _load_build(self):
    state = self.stack.pop()
    inst = self.stack[-1]
    # torch gives a state_dict's OrderedDict its `_metadata` this way; nothing else we build
    # takes a state, and each entry copied is charged, as copies of one big state would amplify.
    if type(inst) is not collections.OrderedDict:
      raise ValueError(f"BUILD of a {type(inst).__name__}")
    if isinstance(state, tuple) and len(state) == 2 and not state[1]:
      state = state[0]  # (state, slotstate) with no slots.
    if state is None:
      return
    if not isinstance(state, dict) or not all(type(key) is str for key in state):
      raise ValueError(f"BUILD state is a {type(state).__name__}, not a dict of attributes")
    self._objects_left -= _OP_COST * len(state)
    if self._objects_left < 0:
      raise CheckpointError(f"refusing to load '{self._path}': its pickle copies more attributes "
                            "than its size allows")
    inst.__dict__.update((sys.intern(key), value) for key, value in state.items())

  def _load_reduce(self):
    args = self.stack.pop()
    if type(args) is not tuple:  # As the C unpickler insists.
      raise ValueError(f"REDUCE arguments are a {type(args).__name__}, not a tuple")
    self.stack[-1] = self.stack[-1](*args)

  dispatch[pickle.BUILD[0]] = _load_build
  dispatch[pickle.REDUCE[0]] = _load_reduce

  def persistent_load(self, pid):
    if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
        or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
        or type(pid[4]) is not int or pid[4] < 0):
      raise CheckpointError(f"'{self._path}' is not a valid torch checkpoint: "
                            f"unexpected persistent id {_brief(pid)}")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if key not in self._storages:
      self._storages[key] = _Storage(self._read_storage(key, storage_type.dtype, numel))
    return self._storages[key]

  def _read_storage(self, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
    member = f"{self._prefix}/data/{key}"
    try:
      self._archive.zip.getinfo(member)
    except KeyError:
      raise CheckpointError(f"'{self._path}' is damaged: storage {member} is missing") from None
    raw = self._archive.read(member, _MAX_INFLATED_BYTES, need=numel * dtype.itemsize)
    if dtype.itemsize == 1:
      data = np.frombuffer(raw, dtype)
    else:
      # Byte-swap as unsigned ints so it also works for bfloat16, then reinterpret.
      order = ">" if self._byteorder == "big" else "<"
      words = np.frombuffer(raw, np.dtype(f"u{dtype.itemsize}").newbyteorder(order))
      data = words.astype(np.dtype(f"u{dtype.itemsize}"), copy=not words.dtype.isnative)
      data = data.view(dtype)
    data.flags.writeable = False
    return data


def _check_plain(path: str, obj: Any) -> None:
  """Rejects anything but containers, scalars, strings and numeric arrays in the result."""
  seen, todo = set(), [obj]
  while todo:
    item = todo.pop()
    if isinstance(item, (dict, list, tuple, set, frozenset)):
      if id(item) in seen:  # Only containers can recur; ids of every float would cost 70 B each.
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


def _load_archive(path: str, file, file_size: int) -> Any:
  archive = _Archive(path, file, file_size)
  names = archive.zip.namelist()
  pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
  if len(pickles) != 1:
    raise CheckpointError(f"'{path}' is a zip archive but not a torch.save checkpoint "
                          "(no <name>/data.pkl)")
  prefix = pickles[0][:-len("/data.pkl")]
  byteorder = "little"
  if f"{prefix}/byteorder" in names:
    byteorder = archive.read(f"{prefix}/byteorder", 64).decode("ascii", "replace").strip()
    if byteorder not in ("little", "big"):
      raise CheckpointError(f"'{path}' has an unknown byte order {byteorder[:20]!r}")
  data = bytes(archive.read(pickles[0], _MAX_PICKLE_BYTES))
  objects = _OBJECT_RATIO * file_size + _OBJECT_SLACK
  objects -= _pickle_cost(path, data, objects)
  return _ArchiveUnpickler(io.BytesIO(data), path, archive, prefix, byteorder, objects).load()


def load_pth(path) -> Any:
  """Loads a zip-format `torch.save` file as dicts/lists/tuples/scalars and numpy arrays."""
  path = os.fspath(path)
  try:
    file = open(path, "rb")  # pylint: disable=consider-using-with
  except OSError as err:
    raise CheckpointError(f"cannot read checkpoint '{path}': {_one_line(err)}") from None
  with file:
    try:
      head = file.read(64)
      file_size = os.fstat(file.fileno()).st_size  # What the file really holds bounds the rest.
    except OSError as err:
      raise CheckpointError(f"cannot read checkpoint '{path}': {_one_line(err)}") from None
    if not head:
      raise CheckpointError(f"'{path}' is empty, not a PyTorch checkpoint")
    if _LEGACY_MAGIC in head[:20]:
      raise CheckpointError(f"'{path}' uses PyTorch's legacy (pre-1.6) format, which is not "
                            "supported; re-save it with torch >= 1.6: "
                            "torch.save(torch.load(path), path)")
    if not head.startswith(b"PK"):
      raise CheckpointError(f"'{path}' is not a PyTorch checkpoint (it is "
                            f"{describe_content(path)}, not a zip archive)")
    try:
      file.seek(0)
      obj = _load_archive(path, file, file_size)
    except CheckpointError:
      raise
    except zipfile.BadZipFile as err:
      raise CheckpointError(f"'{path}' is a damaged or truncated zip archive "
                            f"({_one_line(err)})") from None
    except Exception as err:  # Any parse failure of untrusted bytes is the file's fault.
      raise CheckpointError(f"'{path}' is a malformed torch checkpoint "
                            f"({_one_line(err)})") from None
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

