"""Experiment configs: typed, validated, one Python file per experiment in `configs/`.

An experiment file defines `get_config() -> Experiment`; its docstring states the command that
runs it and what to expect. `load_experiment(name_or_path, overrides)` reads one (a path, or the
name of a file shipped in `ovjax.configs`) and applies `section.key=value` overrides from the
command line; a typo or a wrong type is a one-line error naming the key.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import importlib.util
import json
import typing
from pathlib import Path
from typing import Any

from ovjax.config import (BaseTTSConfig, ConverterConfig, base_tts_config_from_official,
                          converter_config_from_official)
from ovjax.errors import OvjaxError
from ovjax.fileio import describe_content, require_regular_file


@dataclasses.dataclass(frozen=True)
class Data:
  """The corpus and how it is batched (see `ovjax.data`)."""
  layout: str = "manifest"          # manifest | ljspeech | vctk | tfds:<name>
  source: str = ""                  # the manifest file or corpus folder
  data_dir: str = ""                # where the TFDS dataset is built ("": WORKDIR/data)
  language: str = "en-us"           # default language of items that name none
  min_seconds: float = 0.5
  max_seconds: float = 20.0
  validation_items: int = 8
  batch_size: int = 16              # global, over all processes and devices
  frame_buckets: tuple[int, ...] = (300, 400, 500, 600, 700, 800, 900, 1000, 1800)
  num_threads: int = 2
  beam: bool = False                # build through TFDS' Apache Beam path (the beam extra)


@dataclasses.dataclass(frozen=True)
class Train:
  """The optimisation (VITS' hyper-parameters by default)."""
  steps: int = 100_000
  seed: int = 1234
  learning_rate: float = 2e-4
  betas: tuple[float, float] = (0.8, 0.99)
  eps: float = 1e-9
  weight_decay: float = 0.01
  lr_decay: float = 0.999875        # per epoch
  segment_frames: int = 32          # 8192 samples at hop 256
  c_mel: float = 45.0
  c_kl: float = 1.0
  discriminator_width: float = 1.0  # 1: VITS' full discriminator
  compute_dtype: str = "float32"    # or bfloat16 (parameters stay float32)
  fsdp: bool = False                # shard parameters and optimiser state over the devices
  init_from: str = ""               # warm start: an official or imported model folder
  discriminator_from: str = ""      # warm start of D: a VITS-layout D_*.pth
  log_every: int = 50
  eval_every: int = 1000
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  disable_most_optimizations: bool = False  # XLA: faster compiles, slower steps (tiny runs)


@dataclasses.dataclass(frozen=True)
class Experiment:
  kind: str                         # "converter" or "base"
  model: dict[str, Any]             # the model's config.json (official layout)
  data: Data = Data()
  train: Train = Train()

  def model_config(self) -> BaseTTSConfig | ConverterConfig:
    parse = base_tts_config_from_official if self.kind == "base" else converter_config_from_official
    try:
      return parse(self.model)
    except OvjaxError as e:
      raise OvjaxError(f"experiment model: {str(e).removeprefix('config: ')}") from None

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def validate(exp: Experiment) -> Experiment:
  if exp.kind not in ("converter", "base"):
    raise OvjaxError(f"experiment: kind must be 'converter' or 'base', got {exp.kind!r}")
  for section in (exp.data, exp.train):
    for field in dataclasses.fields(section):
      _check_type(f"{type(section).__name__.lower()}.{field.name}", getattr(section, field.name),
                  field.type)
  t, d = exp.train, exp.data
  positive = {"train.steps": t.steps, "train.learning_rate": t.learning_rate,
              "train.segment_frames": t.segment_frames, "data.batch_size": d.batch_size,
              "train.log_every": t.log_every, "train.eval_every": t.eval_every,
              "train.checkpoint_every": t.checkpoint_every,
              "train.keep_checkpoints": t.keep_checkpoints,
              "train.discriminator_width": t.discriminator_width}
  for name, value in positive.items():
    if not value > 0:
      raise OvjaxError(f"experiment: {name} must be positive, got {value}")
  if t.compute_dtype not in ("float32", "bfloat16"):
    raise OvjaxError("experiment: train.compute_dtype must be float32 or bfloat16")
  if not 0 < t.lr_decay <= 1:
    raise OvjaxError("experiment: train.lr_decay must be in (0, 1]")
  if list(d.frame_buckets) != sorted(set(d.frame_buckets)) or d.frame_buckets[0] < t.segment_frames:
    raise OvjaxError("experiment: data.frame_buckets must be increasing and at least "
                     "train.segment_frames")
  config = exp.model_config()
  if exp.kind == "converter" and not config.text_symbols:
    raise OvjaxError("experiment model: a converter to train needs 'ipa_symbols' (the IPA "
                     "symbol table of its text encoder)")
  return exp


def _check_type(name: str, value, annotation) -> None:
  hint = eval(annotation, globals()) if isinstance(annotation, str) else annotation  # noqa: S307
  origin = typing.get_origin(hint)
  if origin is tuple:
    ok = isinstance(value, tuple) and all(_is(v, typing.get_args(hint)[0]) for v in value)
  else:
    ok = _is(value, hint)
  if not ok:
    raise OvjaxError(f"experiment: {name} should be {annotation}, got {value!r}")


def _is(value, kind) -> bool:
  if kind is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if kind is int:
    return isinstance(value, int) and not isinstance(value, bool)
  return isinstance(value, kind)


def _parse_value(text: str):
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    return text  # A bare string (paths).


def apply_overrides(exp: Experiment, overrides) -> Experiment:
  """`data.source=/corpus/manifest.jsonl`, `train.steps=300`, `train.betas=[0.8,0.99]`."""
  for item in overrides or ():
    key, sep, text = item.partition("=")
    section, _, field = key.partition(".")
    if not sep or section not in ("data", "train") or not field:
      raise OvjaxError(f"override {item!r}: expected data.KEY=VALUE or train.KEY=VALUE")
    part = getattr(exp, section)
    names = {f.name: f for f in dataclasses.fields(part)}
    if field not in names:
      raise OvjaxError(f"override {item!r}: {section} has no key {field!r} "
                       f"(keys: {', '.join(names)})")
    value = _parse_value(text)
    if isinstance(value, list):
      value = tuple(value)
    if names[field].type in ("str", str) and not isinstance(value, str):
      value = text
    if names[field].type in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    exp = dataclasses.replace(exp, **{section: dataclasses.replace(part, **{field: value})})
  return exp


def _config_file(name_or_path: str) -> Path:
  path = Path(name_or_path)
  if path.suffix == ".py" or path.exists():
    if not path.exists():
      raise OvjaxError(f"--config {path}: no such file")
    require_regular_file(path, f"--config {path}")
    if path.suffix != ".py":  # The loader would not know what to do with it.
      raise OvjaxError(f"--config {path}: an experiment config is a Python file (.py) with "
                       f"get_config(); this is {describe_content(path)}")
    return path
  shipped = importlib.resources.files("ovjax.configs") / f"{name_or_path}.py"
  if not shipped.is_file():
    available = sorted(p.name[:-3] for p in importlib.resources.files("ovjax.configs").iterdir()
                       if p.name.endswith(".py") and not p.name.startswith("_"))
    raise OvjaxError(f"--config {name_or_path}: no such file or shipped config "
                     f"(shipped: {', '.join(available)})")
  return Path(str(shipped))


def load_experiment(name_or_path: str, overrides=()) -> Experiment:
  """An experiment config file (or shipped config name) with overrides, validated."""
  path = _config_file(name_or_path)
  spec = importlib.util.spec_from_file_location(f"ovjax_experiment_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    exp = module.get_config()
  except OvjaxError:
    raise
  except Exception as e:  # noqa: BLE001 - a broken config file: say which, in one line.
    raise OvjaxError(f"--config {path}: {type(e).__name__}: {e}") from None
  if not isinstance(exp, Experiment):
    raise OvjaxError(f"--config {path}: get_config() must return an ovjax Experiment")
  return validate(apply_overrides(exp, overrides))


def model_json(name: str) -> dict[str, Any]:
  """A model config shipped in `ovjax.configs` (e.g. "converter_v2") as a dict."""
  return json.loads((importlib.resources.files("ovjax.configs") / f"{name}.json").read_text())


def experiment_from_json(data: dict[str, Any]) -> Experiment:
  """The inverse of `Experiment.to_json` (the workdir's config.json)."""
  tuplify = lambda d: {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
  return Experiment(kind=data["kind"], model=data["model"], data=Data(**tuplify(data["data"])),
                    train=Train(**tuplify(data["train"])))
