"""Hostile `.pth` files: small ones crafted to make the reader allocate far more than they hold.

Each must fail with a one-line `CheckpointError` before it allocates. The bombs are loaded in a
fresh interpreter, whose peak RSS growth during the load is what we measure; its address space is
capped too, so a regression fails the test instead of exhausting the machine.
"""

import functools
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from ovjax.checkpoint.torch_pickle import load_pth, load_state_dict
from ovjax.checkpoint.torch_save import save_pth, save_state_dict
from ovjax.errors import CheckpointError
import test_torch_pickle as torch_pickle_tests  # noqa: E402 - beside this file.
from test_torch_pickle import Tensor, _TorchPickler, _fake_torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_RSS_GROWTH = 300 << 20


# --- Pickling the way torch does, without torch: test_torch_pickle's fake torch and pickler ----


class Storage(torch_pickle_tests.Storage):
  """A float32 storage of `numel` elements, saved as `archive/data/<key>` (zeros unless given);
  its payload is made only when written, so a storage can claim a size the test never builds."""
  dtype = np.dtype(np.float32)

  def __init__(self, key: str, numel: int, values: np.ndarray | None = None):
    self.key, self.numel, self.values = key, numel, values

  def payload(self) -> bytes:
    values = np.zeros(self.numel, np.float32) if self.values is None else self.values
    return values.astype("<f4").tobytes()


def _pickled(obj) -> tuple[bytes, dict[str, Storage]]:
  buf = io.BytesIO()
  with _fake_torch():
    pickler = _TorchPickler(buf)
    pickler.dump(obj)
  return buf.getvalue(), pickler.storages


# --- Writing zips whose headers say what we like ---------------------------------------------

class _Member:
  """A zip member: its compressed bytes (as chunks, so a bomb never sits in memory), method, and
  the uncompressed size and CRC its headers declare."""

  def __init__(self, chunks, compressed: int, method: int, declared: int, crc: int):
    self.chunks, self.compressed, self.method = chunks, compressed, method
    self.declared, self.crc = declared, crc


def _stored(data: bytes, declared: int | None = None, method: int = 0) -> _Member:
  return _Member(lambda: [data], len(data), method, len(data) if declared is None else declared,
                 zlib.crc32(data))


@functools.cache
def _zero_block() -> tuple[bytes, bytes]:
  """A raw deflate block of 1 MiB of zeros that can repeat (a full flush resets the compressor,
  so every block after it is the same bytes), and the stream's final empty block."""
  compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
  block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
  again = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
  assert again == block
  return block, compressor.flush()


def _zeros(mib: int, declared: int | None = None) -> _Member:
  """`mib` MiB of deflated zeros, ~1 KB per MiB. The CRC is never checked: a reader that gets to
  the end of a bomb has already failed."""
  block, end = _zero_block()
  return _Member(lambda: [*([block] * mib), end], mib * len(block) + len(end), zlib.DEFLATED,
                 mib << 20 if declared is None else declared, 0)


def _write_zip(path: Path, members: dict[str, _Member]) -> Path:
  directory = b""
  with open(path, "wb") as f:
    for name, member in members.items():
      raw, offset = name.encode(), f.tell()
      sizes = (member.crc, member.compressed, member.declared)
      f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, member.method, 0, 0x21, *sizes,
                          len(raw), 0) + raw)
      for chunk in member.chunks():
        f.write(chunk)
      directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, member.method, 0,
                               0x21, *sizes, len(raw), 0, 0, 0, 0, 0, offset) + raw
    start = f.tell()
    f.write(directory)
    f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                        len(directory), start, 0))
  return path


def _checkpoint(path: Path, obj=None, pickled: bytes | None = None,
                members: dict[str, _Member] | None = None) -> Path:
  """A torch.save-layout archive of `obj` (or of raw pickle bytes); `members` (named inside
  `archive/`) replace or add to the ones written from it."""
  storages = {}
  if pickled is None:
    pickled, storages = _pickled(obj)
  written = {"data.pkl": _stored(pickled), "byteorder": _stored(b"little")}
  written.update({f"data/{key}": _stored(s.payload()) for key, s in storages.items()
                  if f"data/{key}" not in (members or {})})
  written.update(members or {})
  written["version"] = _stored(b"3\n")
  return _write_zip(path, {f"archive/{name}": member for name, member in written.items()})


# --- Checking -----------------------------------------------------------------------------------

def _error(path) -> str:
  with pytest.raises(CheckpointError) as info:
    load_pth(path)
  message = str(info.value)
  assert "\n" not in message and path.name in message, message
  return message


_CHILD = r"""
import json, resource, sys
from ovjax.checkpoint.torch_pickle import load_pth
from ovjax.errors import CheckpointError

def status(field):
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) << 10 for line in f if line.startswith(field + ":"))

resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + (2 << 30), resource.RLIM_INFINITY))
try:
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # Resets VmHWM, so the peak is the load's alone.
except OSError:
  pass
before = status("VmRSS")
try:
  result, error = repr(load_pth(sys.argv[1]))[:200], None
except CheckpointError as err:
  result, error = None, str(err)
print(json.dumps({"result": result, "error": error, "growth": status("VmHWM") - before}))
"""


def _load_in_child(path: Path) -> dict:
  """Loads `path` in a fresh interpreter: its error (or result's repr) and peak RSS growth. The
  peak is VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest)."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                        timeout=300, cwd=REPO, env=env, check=True)
  out = json.loads(done.stdout.strip().splitlines()[-1])
  print(f"{path.name}: peak RSS growth {out['growth'] / 2**20:.1f} MiB")
  assert out["growth"] < MAX_RSS_GROWTH, out
  return out


def _bomb_error(path: Path) -> str:
  assert path.stat().st_size < 4 << 20  # The file itself stays small.
  message = _load_in_child(path)["error"]
  assert message is not None and "\n" not in message and path.name in message, message
  return message


# --- Tensor views -------------------------------------------------------------------------------

def test_stride_zero_view_of_a_billion_elements(tmp_path):
  path = _checkpoint(tmp_path / "broadcast.pth",
                     {"x": Tensor(Storage("0", 1), 0, (2**30,), (0,))})
  message = _bomb_error(path)
  assert "refusing to load" in message and "tensor 'x'" in message, message
  assert "1073741824 elements of a 1-element storage" in message, message


def test_repeated_overlapping_views_are_counted_together(tmp_path):
  storage = Storage("0", 1 << 16)  # 256 KiB; each view below is all of it, overlapping.
  obj = {f"w{i}": Tensor(storage, 0, (256, 256), (256, 1)) for i in range(64)}
  message = _bomb_error(_checkpoint(tmp_path / "overlap.pth", obj))
  assert "more than 4x the 262144 bytes of storage" in message, message


def test_out_of_bounds_view(tmp_path):
  path = _checkpoint(tmp_path / "oob.pth", {"x": Tensor(Storage("0", 4), 2, (3,), (1,))})
  message = _error(path)
  assert "tensor 'x' view needs 5 elements but its storage holds 4" in message, message


@pytest.mark.parametrize("offset, size, stride", [
  (0, (4,), (-1,)),
  (3, (2, 2), (-1, 1)),
  (-1, (2,), (1,)),
  (0, (-4,), (1,)),
  (0, (2.0,), (1,)),
  (0, (2,), (1, 1)),
])
def test_bad_geometry(tmp_path, offset, size, stride):
  path = _checkpoint(tmp_path / "geometry.pth",
                     {"x": Tensor(Storage("0", 4), offset, size, stride)})
  message = _error(path)
  assert "tensor 'x' has a bad geometry" in message, message


def test_small_broadcast_and_tied_views_still_load(tmp_path):
  values = np.arange(6, dtype=np.float32)
  storage = Storage("0", 6, values)
  obj = {"b": Tensor(storage, 5, (100, 3), (0, 0)), "w": Tensor(storage, 0, (2, 3), (3, 1)),
         "tied": Tensor(storage, 0, (2, 3), (3, 1)), "t": Tensor(storage, 0, (3, 2), (1, 3))}
  state = load_state_dict(_checkpoint(tmp_path / "views.pth", obj))
  np.testing.assert_array_equal(state["b"], np.full((100, 3), 5, np.float32))
  np.testing.assert_array_equal(state["tied"], values.reshape(2, 3))
  np.testing.assert_array_equal(state["t"], values.reshape(2, 3).T)
  assert state["w"] is not state["tied"] and state["b"].flags.c_contiguous


# --- Zip members --------------------------------------------------------------------------------

def test_storage_member_inflating_to_2_gib(tmp_path):
  numel = (2 << 30) // 4
  path = _checkpoint(tmp_path / "storage_bomb.pth",
                     {"x": Tensor(Storage("0", numel), 0, (numel,), (1,))},
                     members={"data/0": _zeros(2048)})
  message = _bomb_error(path)
  assert "declare 2147483" in message and "may inflate to" in message, message


def test_data_pkl_inflating_to_1_gib(tmp_path):
  message = _bomb_error(_checkpoint(tmp_path / "pickle_bomb.pth", pickled=b"",
                                    members={"data.pkl": _zeros(1024)}))
  assert "declare 1073741" in message, message


@pytest.mark.parametrize("member", ["data/0", "data.pkl"])
def test_member_whose_central_directory_size_lies(tmp_path, member):
  # 4 floats as the pickle says, and as the headers say, but the stream inflates to 2 GiB.
  pickled, _ = _pickled({"x": Tensor(Storage("0", 4), 0, (4,), (1,))})
  declared = 16 if member == "data/0" else len(pickled)
  path = _checkpoint(tmp_path / "liar.pth", {"x": Tensor(Storage("0", 4), 0, (4,), (1,))},
                     members={member: _zeros(2048, declared=declared)})
  message = _bomb_error(path)
  assert f"inflates past the {declared} bytes its zip header declares" in message, message


def test_storage_size_must_match_the_pickle(tmp_path):
  obj = {"x": Tensor(Storage("0", 4), 0, (4,), (1,))}
  short = _checkpoint(tmp_path / "short.pth", obj, members={"data/0": _stored(bytes(8))})
  assert "declares 8 bytes, but the pickle says it holds 16" in _error(short)
  long = _checkpoint(tmp_path / "long.pth", obj, members={"data/0": _stored(bytes(64))})
  assert "declares 64 bytes, but the pickle says it holds 16" in _error(long)
  # Headers that claim more than the stored bytes: the read comes up short.
  truncated = _checkpoint(tmp_path / "truncated.pth", obj,
                          members={"data/0": _stored(bytes(8), declared=16)})
  assert "truncated (8 of 16 bytes)" in _error(truncated)


def test_data_pkl_over_64_mib(tmp_path):
  # 100 MiB of pickle in ~100 KB, in a file big enough that the compression ratio allows it.
  path = _checkpoint(tmp_path / "big_pickle.pth", pickled=b"",
                     members={"data.pkl": _zeros(100), "padding": _stored(bytes(3 << 20))})
  message = _bomb_error(path)
  assert "declares 104857600 bytes, more than the 67108864 allowed" in message, message


def test_compression_without_an_output_bound_is_refused(tmp_path):
  # zipfile inflates bzip2 (method 12) and lzma (14) a whole chunk at a time, however large.
  path = _checkpoint(tmp_path / "bzip2.pth", {"x": Tensor(Storage("0", 4), 0, (4,), (1,))},
                     members={"data/0": _stored(bytes(16), method=12)})
  assert "compression method 12" in _error(path)


# --- Pickles that amplify -----------------------------------------------------------------------

def test_memo_index_allocates_nothing(tmp_path):
  # LONG_BINPUT 2**31: the C unpickler grows its memo array to that index (16 GiB of zeros).
  pickled = b"\x80\x02Nr" + struct.pack("<I", 2**31) + b"."
  out = _load_in_child(_checkpoint(tmp_path / "memo.pth", pickled=pickled))
  assert out == {"result": "None", "error": None, "growth": out["growth"]}


def test_cheap_opcodes_cannot_build_gigabytes(tmp_path):
  # 3 MiB of EMPTY_SET: 3 million 216-byte sets, 0.7 GB, from an uncompressed 3 MiB file.
  pickled = b"\x80\x04" + b"\x8f" * (3 << 20) + b"."
  message = _bomb_error(_checkpoint(tmp_path / "sets.pth", pickled=pickled))
  assert "its pickle would build more than" in message, message


def test_build_cannot_copy_a_big_state_again_and_again(tmp_path):
  # A 20000-entry state, then 20000 new OrderedDicts given it by BUILD and kept on the stack:
  # 6 bytes each, copying 400 million entries in all (~12 GB).
  keys = b"".join(b"X" + struct.pack("<I", 6) + b"k%05d" % i + b"N" for i in range(20000))
  pickled = (b"\x80\x02ccollections\nOrderedDict\nq\x00}(" + keys + b"uq\x010"
             + b"h\x00)Rh\x01b" * 20000 + b"N.")
  message = _bomb_error(_checkpoint(tmp_path / "build.pth", pickled=pickled))
  assert "copies more attributes than its size allows" in message, message


@pytest.mark.parametrize("pickled, what", [
  # OrderedDict(big) over and over would copy `big` each time.
  (b"\x80\x02ccollections\nOrderedDict\n}\x85R.", "OrderedDict built from arguments"),
  # str(big) over and over would build a big string each time.
  (b"\x80\x02ctorch.serialization\n_get_layout\n]\x85R.", "layout named by a list"),
])
def test_amplifying_calls_are_refused(tmp_path, pickled, what):
  assert what in _error(_checkpoint(tmp_path / "call.pth", pickled=pickled))


# --- Real checkpoints ---------------------------------------------------------------------------

def test_checkpoint_written_by_torch_save_round_trips_bit_exactly(tmp_path):
  rng = np.random.default_rng(0)
  state = {
    "f32": rng.normal(size=(64, 33)).astype(np.float32),
    "f32_specials": np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45], np.float32),
    "bf16": rng.normal(size=(3, 5)).astype(ml_dtypes.bfloat16),
    "f16": rng.normal(size=(7,)).astype(np.float16),
    "f64": rng.normal(size=(2, 2, 2)),
    "i64": rng.integers(-2**62, 2**62, size=(9,)),
    "u8": rng.integers(0, 256, size=(4, 4), dtype=np.uint8),
    "bool": rng.random((5,)) > 0.5,
    "scalar": np.array(3.5, np.float32),
    "empty": np.zeros((0, 3), np.float32),
  }
  save_state_dict(tmp_path / "G_1.pth", state, iteration=1)
  loaded = load_state_dict(tmp_path / "G_1.pth")
  assert list(loaded) == list(state)
  for key, array in state.items():
    got = loaded[key]
    assert got.dtype == array.dtype and got.shape == array.shape, key
    assert got.tobytes() == array.tobytes(), key
  se = rng.normal(size=(1, 256, 1)).astype(np.float32)
  save_pth(tmp_path / "se.pth", se)
  assert load_pth(tmp_path / "se.pth").tobytes() == se.tobytes()
