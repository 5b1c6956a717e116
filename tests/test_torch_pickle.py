"""Tests for the torch-free, code-free `.pth` reader."""

import builtins
import collections
import contextlib
import io
import os
import pickle
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from ovjax.checkpoint.torch_pickle import load_pth, load_state_dict, load_tensor
from ovjax.errors import CheckpointError

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
MODELS = ["converter_v2_small", "converter_v1_small", "base_v1_small"]
SE_FILES = sorted((REFERENCE / "openvoice_v2_ses").glob("*.pth"))


# --- Writing torch-layout archives without torch ----------------------------------------------
# pickle emits a GLOBAL only for an object it can find again by importing its module, so the
# fake torch modules are registered in sys.modules just while pickling.

def _fake(module: str, name: str, obj):
  obj.__module__, obj.__name__, obj.__qualname__ = module, name, name
  return obj


_rebuild_tensor_v2 = _fake("torch._utils", "_rebuild_tensor_v2", lambda *args: None)
_STORAGE_CLASSES = {
  np.dtype(np.float32): _fake("torch", "FloatStorage", type("FloatStorage", (), {})),
  np.dtype(np.float64): _fake("torch", "DoubleStorage", type("DoubleStorage", (), {})),
  np.dtype(ml_dtypes.bfloat16): _fake("torch", "BFloat16Storage", type("BFloat16Storage", (), {})),
}


@contextlib.contextmanager
def _fake_torch():
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch._utils = utils
  for cls in _STORAGE_CLASSES.values():
    setattr(torch, cls.__name__, cls)
  added = {"torch": torch, "torch._utils": utils}
  assert not set(added) & set(sys.modules), "real torch must not be imported in these tests"
  sys.modules.update(added)
  try:
    yield
  finally:
    for name in added:
      del sys.modules[name]


class Storage:
  """A flat storage, saved as `<prefix>/data/<key>`. The pickler reads only `key`, `dtype` and
  `numel` (so a storage can claim a size it never materialises: test_hostile_checkpoints)."""

  def __init__(self, key: str, values: np.ndarray):
    self.key, self.values = key, values
    self.dtype, self.numel = values.dtype, values.size


class Tensor:
  """Pickles the way torch pickles a tensor: `_rebuild_tensor_v2(storage, offset, size, ...)`."""

  def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
    self.args = (storage, offset, size, stride, False, collections.OrderedDict())

  def __reduce__(self):
    return _rebuild_tensor_v2, self.args


class _TorchPickler(pickle.Pickler):

  def __init__(self, file):
    super().__init__(file, protocol=2)
    self.storages: dict[str, Storage] = {}

  def persistent_id(self, obj):
    if not isinstance(obj, Storage):
      return None
    self.storages[obj.key] = obj
    return ("storage", _STORAGE_CLASSES[obj.dtype], obj.key, "cpu", obj.numel)


def write_archive(path: Path, obj, byteorder: str = "little", prefix: str = "archive") -> Path:
  buf = io.BytesIO()
  with _fake_torch():
    pickler = _TorchPickler(buf)
    pickler.dump(obj)
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr(f"{prefix}/data.pkl", buf.getvalue())
    zf.writestr(f"{prefix}/byteorder", byteorder)
    for key, storage in pickler.storages.items():
      order = ">" if byteorder == "big" else "<"
      values = storage.values
      if values.dtype.itemsize > 1:  # Swap as unsigned words so bfloat16 works too.
        words = values.view(f"u{values.dtype.itemsize}")
        values = words.astype(words.dtype.newbyteorder(order))
      zf.writestr(f"{prefix}/data/{key}", values.tobytes())
    zf.writestr(f"{prefix}/version", "3\n")
  return path


def _one_line_error(path, loader=load_pth) -> str:
  with pytest.raises(CheckpointError) as info:
    loader(path)
  message = str(info.value)
  assert "\n" not in message
  return message


# --- Real checkpoints ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_state_dict_matches_npz(model):
  folder = REFERENCE / "openvoice" / model
  state = load_state_dict(folder / "checkpoint.pth")
  expected = np.load(folder / "state_dict.npz")
  assert type(state) is dict
  assert set(state) == set(expected.files)
  for key in expected.files:
    assert state[key].shape == expected[key].shape, key
    assert state[key].dtype == expected[key].dtype, key
    assert np.array_equal(state[key], expected[key]), key


def test_tone_colour_files():
  assert len(SE_FILES) >= 10
  for path in SE_FILES:
    se = load_tensor(path)
    assert se.dtype == np.float32 and se.shape == (1, 256, 1), path
    assert np.all(np.isfinite(se)), path


def test_load_tensor_rejects_state_dict():
  message = _one_line_error(REFERENCE / "openvoice" / "converter_v2_small" / "checkpoint.pth",
                            load_tensor)
  assert "not a single tensor" in message


def test_load_state_dict_rejects_single_tensor():
  assert "not a state_dict" in _one_line_error(SE_FILES[0], load_state_dict)


# --- Hand-built archives ----------------------------------------------------------------------

def test_strided_tensor_with_offset(tmp_path):
  values = np.arange(20, dtype=np.float32)
  storage = Storage("0", values)
  obj = {
    "model": collections.OrderedDict([
      ("t", Tensor(storage, 3, (3, 4), (1, 3))),  # Transposed: t[i, j] = values[3 + i + 3j].
      ("row", Tensor(storage, 5, (4,), (1,))),  # Shares the storage.
      ("empty", Tensor(storage, 0, (0, 2), (2, 1))),
    ])
  }
  state = load_state_dict(write_archive(tmp_path / "strided.pth", obj))
  expected = values[3:15].reshape(4, 3).T
  assert state["t"].shape == (3, 4) and state["t"].flags.c_contiguous
  np.testing.assert_array_equal(state["t"], expected)
  np.testing.assert_array_equal(state["row"], values[5:9])
  assert state["empty"].shape == (0, 2) and state["empty"].dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64, ml_dtypes.bfloat16])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_dtypes_and_byte_order(tmp_path, dtype, byteorder):
  values = np.linspace(-2, 2, 6).astype(dtype)
  path = write_archive(tmp_path / "t.pth", Tensor(Storage("7", values), 0, (2, 3), (3, 1)),
                       byteorder=byteorder)
  tensor = load_tensor(path)
  assert tensor.dtype == np.dtype(dtype) and tensor.dtype.isnative
  np.testing.assert_array_equal(tensor, values.reshape(2, 3))


def test_out_of_bounds_stride_is_refused(tmp_path):
  path = write_archive(tmp_path / "oob.pth",
                       Tensor(Storage("0", np.zeros(4, np.float32)), 1, (1000,), (1000,)))
  assert "reaches element" in _one_line_error(path)


def test_missing_storage_member(tmp_path):
  path = write_archive(tmp_path / "t.pth", Tensor(Storage("0", np.zeros(4, np.float32)), 0, (4,),
                                                  (1,)))
  with zipfile.ZipFile(path) as zf:
    members = {n: zf.read(n) for n in zf.namelist() if not n.endswith("data/0")}
  with zipfile.ZipFile(path, "w") as zf:
    for name, data in members.items():
      zf.writestr(name, data)
  assert "missing" in _one_line_error(path)


# --- Safety -------------------------------------------------------------------------------------

class _Evil:

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


@pytest.mark.parametrize("make, forbidden", [
  (lambda p: _Evil(os.system, f"touch {p}"), "system"),  # posix.system on Linux.
  (lambda p: _Evil(builtins.eval, f"__import__('os').system('touch {p}')"), "builtins.eval"),
  (lambda p: _Evil(subprocess.call, ["touch", str(p)]), "subprocess.call"),
  (lambda p: {"model": {"w": _Evil(os.system, f"touch {p}")}}, "system"),
])
def test_code_in_pickle_is_never_run(tmp_path, make, forbidden):
  pwned = tmp_path / "pwned"
  path = write_archive(tmp_path / "evil.pth", make(pwned))
  for loader in (load_pth, load_state_dict, load_tensor):
    message = _one_line_error(path, loader)
    assert "refusing to load" in message and forbidden in message and "evil.pth" in message
  assert not pwned.exists()


def test_non_tensor_globals_are_refused(tmp_path):
  path = write_archive(tmp_path / "np.pth", {"model": {"w": np.zeros(3)}})  # numpy's own reduce.
  assert "numpy" in _one_line_error(path, load_state_dict)


def test_bad_files(tmp_path):
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(os.urandom(4096))
  empty = tmp_path / "empty.pth"
  empty.write_bytes(b"")
  real = (REFERENCE / "openvoice" / "converter_v2_small" / "checkpoint.pth").read_bytes()
  truncated = tmp_path / "truncated.pth"
  truncated.write_bytes(real[:len(real) // 2])
  legacy = tmp_path / "legacy.pth"
  legacy.write_bytes(pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + b"\x80\x02M\xe9\x03.")
  not_torch = tmp_path / "not_torch.zip"
  with zipfile.ZipFile(not_torch, "w") as zf:
    zf.writestr("hello.txt", "hi")
  no_tensors = write_archive(tmp_path / "no_tensors.pth", {"model": {}})
  cases = {
    garbage: "not a PyTorch checkpoint",
    empty: "empty",
    truncated: "truncated",
    legacy: "legacy",
    not_torch: "data.pkl",
    no_tensors: "no tensors",
    tmp_path / "missing.pth": "cannot read",
  }
  for path, words in cases.items():
    message = _one_line_error(path, load_state_dict)
    assert words in message and path.name in message, message
