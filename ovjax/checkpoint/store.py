"""Checkpoint folders: official OpenVoice (config.json + checkpoint.pth) or imported ovjax
(config.json + ovjax.json + an Orbax `params` checkpoint). Either loads through `load_converter`
or `load_base_tts`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from ovjax.checkpoint.official import BASE_TABLE, CONVERTER_TABLE, expected_shapes, map_state_dict
from ovjax.checkpoint.torch_pickle import load_state_dict, load_tensor
from ovjax.config import (BaseTTSConfig, ConverterConfig, base_tts_config_from_official,
                          converter_config_from_official, read_json)
from ovjax.errors import CheckpointError
from ovjax.fileio import atomic_output, describe_content

MARKER = "ovjax.json"


def _folder(path) -> Path:
  path = Path(path)
  if not path.exists():
    raise CheckpointError(f"{path}: no such checkpoint folder")
  if not path.is_dir():
    raise CheckpointError(f"{path}: a checkpoint is a folder holding config.json")
  if not (path / "config.json").is_file():
    raise CheckpointError(f"{path}: not a checkpoint folder (no config.json)")
  return path


def is_imported(path) -> bool:
  return (Path(path) / MARKER).is_file()


def _kinds():
  """{kind: (config parser, name table, parameter shapes)}; deferred imports because the model
  modules import this package."""
  from ovjax.models import base_tts, converter
  return {
      "converter": (converter_config_from_official, CONVERTER_TABLE, converter.param_shapes),
      "base_tts": (base_tts_config_from_official, BASE_TABLE, base_tts.param_shapes),
  }


def checkpoint_kind(path) -> str:
  """'converter' or 'base_tts', from config.json (n_speakers = 0 means a converter)."""
  cfg = read_json(_folder(path) / "config.json")
  data = cfg.get("data", {}) if isinstance(cfg, dict) else {}
  # A malformed "data" is left to the config parser, which names it.
  n_speakers = data.get("n_speakers", 0) if isinstance(data, dict) else 0
  return "base_tts" if n_speakers else "converter"


def load_checkpoint(path, kind: str):
  """Config and parameters (training layout, float32 numpy) of a `kind` checkpoint folder."""
  path = _folder(path)
  parse, table, param_shapes = _kinds()[kind]
  try:
    config = parse(read_json(path / "config.json"))
  except CheckpointError as e:
    raise CheckpointError(f"{path / 'config.json'}: {str(e).removeprefix('config: ')}") from None
  shapes = expected_shapes(param_shapes(config))
  if is_imported(path):
    meta = read_json(path / MARKER)
    if meta.get("model") != kind:
      raise CheckpointError(f"{path}: holds an ovjax {meta.get('model')!r}, not a {kind}")
    params = restore_params(path / "params")
    flat = {k: tuple(v.shape) for k, v in _flat(params["params"]).items()}
    if flat != shapes:
      diff = sorted(set(flat) ^ set(shapes)) or [k for k in flat if flat[k] != shapes[k]]
      raise CheckpointError(f"{path}: config and weights do not match (e.g. {diff[0]})")
    return config, params
  pth = path / "checkpoint.pth"
  if not pth.is_file():
    raise CheckpointError(f"{path}: no checkpoint.pth (official layout) or {MARKER} (ovjax)")
  return config, map_state_dict(load_state_dict(pth), table, shapes, source=str(pth))


def load_converter(path) -> tuple[ConverterConfig, dict]:
  return load_checkpoint(path, "converter")


def load_base_tts(path) -> tuple[BaseTTSConfig, dict]:
  return load_checkpoint(path, "base_tts")


def _flat(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    p = f"{prefix}/{k}" if prefix else k
    out.update(_flat(v, p) if isinstance(v, dict) else {p: v})
  return out


def save_params(path, params) -> None:
  """Orbax-save a parameter tree to `path` (a new directory)."""
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(Path(path).absolute(), jax.tree.map(np.asarray, params))
  checkpointer.wait_until_finished()


def restore_params(path) -> dict:
  try:
    restored = ocp.StandardCheckpointer().restore(Path(path).absolute())
  except Exception as e:  # Orbax raises many types; the user needs one line.
    raise CheckpointError(f"{path}: cannot restore Orbax checkpoint ({type(e).__name__})")
  return jax.tree.map(np.asarray, restored)


def save_imported(dst, config: ConverterConfig | BaseTTSConfig, params, extra_files=()) -> None:
  """Write an imported checkpoint folder atomically (a temp folder renamed into place)."""
  kind = "base_tts" if isinstance(config, BaseTTSConfig) else "converter"
  dst = Path(dst)
  if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
    raise CheckpointError(f"{dst}: destination exists and is not an empty folder")
  with atomic_output(dst, directory=True) as tmp:
    (tmp / "config.json").write_text(json.dumps(config.to_official(), indent=2))
    (tmp / MARKER).write_text(json.dumps({"format": 1, "model": kind}, indent=2))
    save_params(tmp / "params", params)
    for f in extra_files:
      shutil.copy2(f, tmp / Path(f).name)


def load_tone_color(path, gin_channels: int | None = None) -> np.ndarray:
  """A tone-colour embedding file (.npy, or an official torch-saved .pth) -> [gin] float32."""
  path = Path(path)
  if not path.is_file():
    raise CheckpointError(f"{path}: no such tone-colour embedding file")
  if path.suffix == ".npy":
    try:
      se = np.load(path, allow_pickle=False)
    except Exception as e:
      raise CheckpointError(f"{path}: not a .npy array (it is {describe_content(path)}; "
                            f"{type(e).__name__})") from None
  else:
    se = load_tensor(path)
  if not isinstance(se, np.ndarray) or se.dtype.kind not in "biuf":
    raise CheckpointError(f"{path}: not a numeric array "
                          f"({getattr(se, 'dtype', type(se).__name__)})")
  se = np.asarray(se, np.float32)
  # Official files are [1, gin, 1]; accept any shape with one non-unit axis.
  if se.ndim == 0 or sum(d != 1 for d in se.shape) > 1:
    raise CheckpointError(f"{path}: tone-colour embedding has shape {se.shape}, expected "
                          f"[1, {gin_channels or 'gin'}, 1] or [{gin_channels or 'gin'}]")
  se = se.reshape(-1)
  if gin_channels is not None and se.shape[0] != gin_channels:
    raise CheckpointError(f"{path}: tone-colour embedding has {se.shape[0]} channels, this "
                          f"model uses {gin_channels}")
  if not np.all(np.isfinite(se)):
    raise CheckpointError(f"{path}: tone-colour embedding contains NaN or inf")
  return se


def save_tone_color(path, se: np.ndarray) -> None:
  """Save an embedding as .npy (atomically)."""
  with atomic_output(path) as tmp, open(tmp, "wb") as f:
    np.save(f, np.asarray(se, np.float32))
