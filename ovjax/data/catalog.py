"""The TFDS catalog's speech datasets (ljspeech, vctk, libritts) as corpus `Item`s.

For users with the `tf` extra (tensorflow + tensorflow-datasets) who prepared a catalog dataset
with TFDS (`tfds build libritts --data_dir ...`). The prepared folder is opened with
`tfds.builder_from_directory`, read with `tfds.data_source` when it was prepared as array_record
and with `tfds.as_numpy(as_dataset(...))` (TensorFlow) otherwise, and each example's fields are
mapped onto an `Item` holding its samples in memory; `preprocess` resamples them to the model's
rate like any other item. `build_dataset(layout="tfds:<name>[:<split>]", source=<TFDS data dir>)`
builds one of our datasets from them.

Field mapping (the catalogs' own feature names):
* ljspeech (22.05 kHz): `speech`, `text_normalized` (else `text`), `id`; one speaker.
* vctk (48 kHz, configs mic1/mic2): `speech`, `text`, `speaker` (a ClassLabel: its name), `id`.
* libritts (24 kHz): `speech`, `text_normalized`, `speaker_id` (an integer), `id`.
"""
from __future__ import annotations

from collections.abc import Iterator
import importlib.util
import os
from pathlib import Path
import re

import numpy as np

from ovjax.data.corpus import Item
from ovjax.errors import OvjaxError

# name -> (text fields in order of preference, speaker field or None, rate if the features omit it)
CATALOG = {
    "ljspeech": (("text_normalized", "text"), None, 22050),
    "vctk": (("text",), "speaker", 48000),
    "libritts": (("text_normalized", "text_original"), "speaker_id", 24000),
}


def _default_data_dir() -> str:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  return tfds.core.constants.get_default_data_dir()


def _version_key(path: Path) -> tuple[int, ...]:
  try:
    return tuple(int(p) for p in path.name.split("."))
  except ValueError:
    return (-1,)


def prepared_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
  """The folder of the prepared catalog dataset `name` ("vctk" or "vctk/mic2"), newest version.

  Raises:
    OvjaxError: unknown name, or the dataset is not prepared under `data_dir`.
  """
  base = name.split("/")[0]
  if base not in CATALOG:
    raise OvjaxError(f"unknown catalog dataset {name!r}; choose one of {', '.join(CATALOG)}")
  root = Path(data_dir or _default_data_dir()) / name
  # Version folders only: a crashed `tfds build` leaves incomplete.* folders beside them.
  found = sorted((p.parent for p in root.glob("**/dataset_info.json")
                  if re.fullmatch(r"\d+\.\d+\.\d+", p.parent.name)),
                 key=lambda p: (str(p.parent), _version_key(p)))
  if not found:
    raise OvjaxError(f"TFDS dataset {name!r} is not prepared under {root.parent}; prepare it "
                     f"with `tfds build {base} --data_dir {root.parent}` (needs the tf extra)")
  # Without a config in the name, the first config folder (vctk: mic1, TFDS' default) wins.
  first_config = found[0].parent
  return max((p for p in found if p.parent == first_config), key=_version_key)


def _rows(builder, split: str) -> Iterator[dict]:
  """The examples of one split as dicts of numpy values."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  if str(builder.info.file_format.value) == "array_record":
    source = builder.as_data_source(split)
    for i in range(len(source)):
      yield source[i]
    return
  if importlib.util.find_spec("tensorflow") is None:
    raise OvjaxError(f"{builder.info.full_name} was prepared as {builder.info.file_format.value}, "
                     "which needs TensorFlow to read (install the tf extra) or prepare it with "
                     "--file_format=array_record")
  yield from tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))


def _str(value) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray):
    return _str(value.item())
  return str(value)


def _samples(speech: np.ndarray) -> np.ndarray:
  """Integer PCM (int16, or int64 holding int16 values) or float -> float32 in [-1, 1]."""
  speech = np.asarray(speech)
  if np.issubdtype(speech.dtype, np.integer):
    return (speech.astype(np.float32) / 32768.0)
  return speech.astype(np.float32)


def default_splits(builder) -> list[str]:
  """"train" when the dataset has it, else every split named train* (libritts)."""
  names = list(builder.info.splits.keys())
  if "train" in names:
    return ["train"]
  return sorted(n for n in names if n.startswith("train")) or names


def catalog_items(name: str, split: str | None = None,
                  data_dir: str | os.PathLike | None = None,
                  language: str = "en-us") -> Iterator[Item]:
  """Items, with their samples in memory, of a prepared TFDS catalog dataset.

  Args:
    name: "ljspeech", "vctk" (or "vctk/mic1", "vctk/mic2") or "libritts".
    split: a split name or several joined by "+" (libritts "train_clean100+train_clean360");
      default `default_splits`.
    data_dir: the TFDS data dir it was prepared in (default: TFDS' own default).
    language: the items' language.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  path = prepared_dir(name, data_dir)
  text_fields, speaker_field, default_rate = CATALOG[name.split("/")[0]]
  try:
    builder = tfds.builder_from_directory(path)
  except ModuleNotFoundError as e:
    # The catalogs' Audio features are TensorFlow code, whatever the file format.
    raise OvjaxError(f"reading the TFDS dataset {name!r} needs {e.name} (install the tf extra: "
                     "tensorflow + tensorflow-datasets)") from None
  splits = split.split("+") if split else default_splits(builder)
  unknown = [s for s in splits if s not in builder.info.splits]
  if unknown:
    raise OvjaxError(f"{name} has no split {unknown[0]!r}; it has "
                     f"{', '.join(builder.info.splits.keys())}")
  features = builder.info.features
  rate = int(getattr(features["speech"], "sample_rate", 0) or
             (builder.info.metadata or {}).get("sample_rate", 0) or default_rate)
  speaker_names = None
  if speaker_field and isinstance(features[speaker_field], tfds.features.ClassLabel):
    speaker_names = features[speaker_field].names
  prefix = len(splits) > 1
  for split_name in splits:
    for row in _rows(builder, split_name):
      text = next((_str(row[f]) for f in text_fields if f in row and _str(row[f]).strip()), "")
      if speaker_field is None:
        speaker = name.split("/")[0]
      elif speaker_names is not None:
        speaker = speaker_names[int(row[speaker_field])]
      else:
        speaker = _str(row[speaker_field])
      key = _str(row["id"])
      yield Item(f"{split_name}/{key}" if prefix else key, None, text, speaker, language,
                 audio=_samples(row["speech"]), sample_rate=rate)
