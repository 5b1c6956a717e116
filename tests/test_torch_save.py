"""Tests for the torch-free `.pth` writer, read back through ovjax's own safe reader.

Loading these files with real PyTorch (weights_only, mmap, meta) and into the official OpenVoice
model is verified outside the suite, which must never import torch.
"""

import collections
import math
import re
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest
from conftest import reference_path

from ovjax.checkpoint import torch_save
from ovjax.checkpoint.torch_pickle import load_pth, load_state_dict
from ovjax.checkpoint.torch_save import save_pth, save_state_dict
from ovjax.errors import CheckpointError, OvjaxError

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int64, np.int32, np.int16,
          np.int8, np.uint8, np.bool_]
SHAPES = [(), (7,), (2, 3, 4, 5), (0,), (0, 3), (3, 0, 2)]
CONVERTER = ("openvoice", "converter_v2_small")


def _arrays(dtype) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  out = {}
  for shape in SHAPES:
    values = rng.normal(0, 50, size=shape)
    out[f"shape_{'x'.join(map(str, shape)) or 'scalar'}"] = np.asarray(
        values > 0 if dtype is np.bool_ else values).astype(dtype)
  return out


def _payload_offsets(path) -> dict[str, int]:
  """Member name -> where its bytes start, from the local headers (which the reader skips)."""
  raw = path.read_bytes()
  with zipfile.ZipFile(path) as archive:
    offsets = {}
    for info in archive.infolist():
      assert raw[info.header_offset:info.header_offset + 4] == b"PK\x03\x04"
      name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
      offsets[info.filename] = info.header_offset + 30 + name_len + extra_len
  return offsets


def _no_temporaries(folder) -> bool:
  return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_and_shape_round_trips(tmp_path, dtype):
  arrays = _arrays(dtype)
  save_state_dict(tmp_path / "m.pth", arrays)
  loaded = load_state_dict(tmp_path / "m.pth")
  assert list(loaded) == list(arrays)
  for key, array in arrays.items():
    got = loaded[key]
    assert got.dtype == array.dtype and got.shape == array.shape, key
    assert got.tobytes() == array.tobytes(), key  # Bitwise: NaN payloads and -0.0 included.


def test_strided_and_big_endian_inputs_are_written_contiguous(tmp_path):
  base = np.arange(24, dtype=np.float32).reshape(4, 6)
  arrays = {"transposed": base.T, "sliced": base[::2, 1::3],
            "big_endian": base.astype(">f4"), "big_endian_int": np.arange(5, dtype=">i8")}
  save_state_dict(tmp_path / "m.pth", arrays)
  loaded = load_state_dict(tmp_path / "m.pth")
  for key, array in arrays.items():
    assert loaded[key].dtype.isnative and loaded[key].dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(loaded[key], array)
  # One GLOBAL serves every tensor (then memo references), as in the pickles torch writes.
  with zipfile.ZipFile(tmp_path / "m.pth") as archive:
    pickled = archive.read("m/data.pkl")
  assert pickled.count(b"_rebuild_tensor_v2") == 1


def test_nested_containers(tmp_path):
  shared = np.arange(3, dtype=np.int64)
  obj = {
    "model": {"w": np.ones((2, 2), np.float32), "b": shared},
    "list": [shared, (1, -2.5, "tone colour", None, True, False), [], {}],
    "numbers": {"big": 2**70, "negative": -(2**40), "nan": math.nan, "inf": -math.inf},
    "text": "音色",
    "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
  }
  save_pth(tmp_path / "nested.pth", obj)
  loaded = load_pth(tmp_path / "nested.pth")
  assert type(loaded) is dict and list(loaded) == list(obj)
  # Dicts holding arrays are state_dicts, pickled as OrderedDicts as torch writes them.
  assert type(loaded["model"]) is collections.OrderedDict and list(loaded["model"]) == ["w", "b"]
  assert type(loaded["numbers"]) is dict and type(loaded["ordered"]) is collections.OrderedDict
  np.testing.assert_array_equal(loaded["model"]["w"], np.ones((2, 2), np.float32))
  assert loaded["list"][1:] == [(1, -2.5, "tone colour", None, True, False), [], {}]
  assert loaded["numbers"]["big"] == 2**70 and loaded["numbers"]["negative"] == -(2**40)
  assert math.isnan(loaded["numbers"]["nan"]) and loaded["numbers"]["inf"] == -math.inf
  assert loaded["text"] == "音色" and list(loaded["ordered"].items()) == [("z", 1), ("a", 2)]
  np.testing.assert_array_equal(loaded["list"][0], shared)
  with zipfile.ZipFile(tmp_path / "nested.pth") as archive:
    storages = [n for n in archive.namelist() if "/data/" in n]
  assert storages == ["nested/data/0", "nested/data/1"]  # The array used twice is stored once.


def test_single_tensor_file(tmp_path):
  se = np.random.default_rng(1).normal(size=(1, 256, 1)).astype(np.float32)
  save_pth(tmp_path / "se.pth", se)
  np.testing.assert_array_equal(load_pth(tmp_path / "se.pth"), se)


def test_numpy_scalars_become_python_numbers(tmp_path):
  save_state_dict(tmp_path / "G_5.pth", {"w": np.zeros(2, np.float32)}, iteration=np.int64(5),
                  learning_rate=np.float32(2e-4), flag=np.bool_(True), optimizer=None)
  loaded = load_pth(tmp_path / "G_5.pth")
  assert loaded["iteration"] == 5 and type(loaded["iteration"]) is int
  assert loaded["learning_rate"] == float(np.float32(2e-4))
  assert type(loaded["learning_rate"]) is float and loaded["flag"] is True
  assert loaded["optimizer"] is None and list(loaded) == ["model", "iteration", "learning_rate",
                                                          "flag", "optimizer"]


def test_reference_checkpoint_round_trip(tmp_path):
  npz = np.load(reference_path(*CONVERTER, "state_dict.npz"))
  original = load_state_dict(reference_path(*CONVERTER, "checkpoint.pth"))
  path = tmp_path / "checkpoint.pth"  # The reference's name, so the same archive folder.
  save_state_dict(path, {key: npz[key] for key in original})
  ours = load_state_dict(path)
  assert list(ours) == list(original) and set(ours) == set(npz.files)
  for key in npz.files:
    assert ours[key].dtype == npz[key].dtype == original[key].dtype, key
    assert ours[key].shape == npz[key].shape == original[key].shape, key
    assert ours[key].tobytes() == npz[key].tobytes() == original[key].tobytes(), key
  with zipfile.ZipFile(path) as mine, zipfile.ZipFile(
      reference_path(*CONVERTER, "checkpoint.pth")) as theirs:
    assert mine.namelist() == theirs.namelist()  # Same records, same order as torch 2.13 wrote.
    for name in mine.namelist():
      if "/data/" in name or name.endswith(("version", "alignment", "byteorder")):
        assert mine.read(name) == theirs.read(name), name
    # torch's pickle is ours followed by the state_dict's `_metadata` attribute (module versions).
    pickled, reference = mine.read("checkpoint/data.pkl"), theirs.read("checkpoint/data.pkl")
    assert pickled.endswith(b"s.") and reference.startswith(pickled[:-2])


def test_zip_layout_is_torchs(tmp_path):
  path = tmp_path / "G_100.pth"
  arrays = {f"{dtype.__name__}_{key}": array for dtype in (np.float32, np.int8)
            for key, array in _arrays(dtype).items()}
  save_state_dict(path, arrays, iteration=100, optimizer=None)
  offsets = _payload_offsets(path)
  with zipfile.ZipFile(path) as archive:
    assert archive.testzip() is None  # Every CRC checks out.
    infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names[:4] == ["G_100/data.pkl", "G_100/.format_version", "G_100/.storage_alignment",
                         "G_100/byteorder"]
    assert names[4:-2] == [f"G_100/data/{k}" for k in range(len(arrays))]
    assert names[-2:] == ["G_100/version", "G_100/.data/serialization_id"]
    assert archive.read("G_100/.format_version") == b"1"
    assert archive.read("G_100/.storage_alignment") == b"64"
    assert archive.read("G_100/byteorder") == b"little"
    assert archive.read("G_100/version") == b"3\n"
    assert re.fullmatch(rb"\d{40}", archive.read("G_100/.data/serialization_id"))
    for info in infos:
      assert info.compress_type == zipfile.ZIP_STORED, info.filename
      assert info.compress_size == info.file_size, info.filename
      assert offsets[info.filename] % 64 == 0, info.filename
    # Members follow one another with miniz's 16-byte data descriptor after non-empty payloads,
    # which torch relies on when it computes offsets instead of reading them.
    for info, following in zip(infos, infos[1:]):
      gap = following.header_offset - offsets[info.filename] - info.file_size
      assert gap == (16 if info.file_size else 0), info.filename


def test_saving_is_deterministic(tmp_path):
  arrays = _arrays(ml_dtypes.bfloat16)
  save_state_dict(tmp_path / "a" / "m.pth", arrays, iteration=3)
  save_state_dict(tmp_path / "b" / "m.pth", arrays, iteration=3)
  assert (tmp_path / "a" / "m.pth").read_bytes() == (tmp_path / "b" / "m.pth").read_bytes()


def test_non_ascii_file_name_uses_torchs_archive_folder(tmp_path):
  path = tmp_path / "音色.pth"
  save_pth(path, {"w": np.ones(3, np.float16)})
  with zipfile.ZipFile(path) as archive:
    assert archive.namelist()[0] == "archive/data.pkl"
  np.testing.assert_array_equal(load_pth(path)["w"], np.ones(3, np.float16))


@pytest.mark.parametrize("bad, what", [
  ({1, 2}, "set"),
  (np.array([None, 1], dtype=object), "object"),
  (np.array(["a"]), "<U1"),
  (np.zeros(2, np.uint16), "uint16"),
  (np.zeros(2, np.complex64), "complex64"),
  (b"raw", "bytes"),
  (1 + 2j, "complex"),
  (collections.defaultdict(list), "defaultdict"),
  (zipfile.ZipInfo("x"), "ZipInfo"),
])
def test_unsupported_objects_leave_no_file(tmp_path, bad, what):
  path = tmp_path / "bad.pth"
  obj = {"model": {"ok": np.zeros(4, np.float32)}, "deep": [1, {"inner": (2, bad)}]}
  with pytest.raises(CheckpointError) as info:
    save_pth(path, obj)
  message = str(info.value)
  assert isinstance(info.value, OvjaxError) and "\n" not in message
  assert str(path) in message and what in message
  assert not path.exists() and _no_temporaries(tmp_path)


def test_failure_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
  path = tmp_path / "G_1.pth"
  save_state_dict(path, {"w": np.zeros(3, np.float32)})
  before = path.read_bytes()
  add, calls = torch_save._ZipWriter.add, []

  def failing_add(self, name, data):
    calls.append(name)
    if len(calls) == 6:  # Half-way: after data.pkl, the metadata and the first storage.
      raise OSError(28, "No space left on device")
    add(self, name, data)

  monkeypatch.setattr(torch_save._ZipWriter, "add", failing_add)
  with pytest.raises(CheckpointError, match="No space left on device"):
    save_state_dict(path, _arrays(np.float32))
  assert len(calls) == 6
  assert path.read_bytes() == before and _no_temporaries(tmp_path)


def test_unwritable_destination(tmp_path):
  (tmp_path / "file").write_text("not a folder")
  with pytest.raises(CheckpointError, match="cannot write"):
    save_pth(tmp_path / "file" / "m.pth", {"w": np.zeros(1, np.float32)})


@pytest.mark.parametrize("state_dict, extra, what", [
  ([np.zeros(2)], {}, "not a list"),
  ({"w": 1.5}, {}, "'w' is a float"),
  ({"w": [np.zeros(2)]}, {}, "'w' is a list"),
  ({1: np.zeros(2)}, {}, "entry '1'"),
  ({"w": np.zeros(2)}, {"model": {}}, "'model'"),
])
def test_save_state_dict_rejects_non_state_dicts(tmp_path, state_dict, extra, what):
  with pytest.raises(CheckpointError, match=re.escape(what)):
    save_state_dict(tmp_path / "m.pth", state_dict, **extra)
  assert not (tmp_path / "m.pth").exists() and _no_temporaries(tmp_path)


def test_too_deep_nesting_is_one_line_error(tmp_path):
  deep = []
  for _ in range(100_000):
    deep = [deep]
  with pytest.raises(CheckpointError, match="RecursionError"):
    save_pth(tmp_path / "deep.pth", deep)
  assert not (tmp_path / "deep.pth").exists()
