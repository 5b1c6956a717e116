"""TFDS datasets of preprocessed speech (array_record), built from corpora, and opened again.

`build_dataset(layout, source, data_dir, text, audio)` prepares
`data_dir/ovjax_<layout>/<config>/1.0.0/` with splits "train" and "validation":

* One TFDS `GeneratorBasedBuilder` per layout (`OvjaxLjspeech`, `OvjaxVctk`, `OvjaxManifest`,
  `OvjaxCatalog` for "tfds:<name>[:<split>]"); its `SpeechConfig` carries the specs, and the
  config name is a hash of layout + specs, so different symbol tables or rates never share a
  folder. Building again with the same specs reuses the folder; a different source, language,
  seed or validation size for the same specs is refused (use another data_dir).
* Every corpus item goes through `preprocess`; a bad item is dropped and counted, never fatal.
  `build_log.json` beside the data (and the returned `BuildReport`) gives the count and a few
  keys per drop reason, and the characters the symbol table lacked.
* Validation items are chosen from the seed, round-robin over speakers in a shuffled order (so
  8 items from 8 speakers when there are that many), among items that survive preprocessing.
* Records are stored in corpus order (integer keys, shuffling disabled: the loader shuffles);
  every record's frames, token count, speaker id and key go into `lengths.npz` and the speaker
  list and specs into `metadata.json`, so `open_dataset` reads lengths without decoding audio.
* `beam=True` returns Apache Beam transforms from `_generate_examples` (TFDS' Beam path; needs
  the `beam` extra), run by default with the DirectRunner; drops and lengths come back from the
  workers as side outputs written beside the data.

No TensorFlow is needed to build or read.
"""
from __future__ import annotations

import abc
import collections
from collections.abc import Sequence
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import time

from etils import epath
import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils.lazy_imports_utils import apache_beam as beam

from ovjax.data import catalog as catalog_lib
from ovjax.data import corpus
from ovjax.data.corpus import Drop, Item
from ovjax.data.preprocess import AudioSpec, TextSpec, dropped_characters, preprocess_item
from ovjax.errors import OvjaxError

VERSION = "1.0.0"
LAYOUTS = ("ljspeech", "vctk", "manifest")  # and "tfds:<catalog name>[:<split>]"
LOG_NAME = "build_log.json"
LENGTHS_NAME = "lengths.npz"
_EXAMPLES_PER_REASON = 5
_WARN_PER_REASON = 5
_SIDE_DIR = "_ovjax_side"
_CATALOG_AUDIO_DIR = "_catalog_audio"

_LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# Configs and names
# ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SpeechConfig(tfds.core.BuilderConfig):
  """A builder config: the specs (which name it) and the corpus it was built from."""
  layout: str = ""
  source: str = ""
  language: str = "en-us"
  text: TextSpec | None = None
  audio: AudioSpec | None = None
  validation_items: int = 8
  seed: int = 0


def _spec_json(layout: str, text: TextSpec, audio: AudioSpec) -> str:
  return json.dumps({"layout": layout, "text": dataclasses.asdict(text),
                     "audio": dataclasses.asdict(audio)}, sort_keys=True, ensure_ascii=True)


def config_name(layout: str, text: TextSpec, audio: AudioSpec) -> str:
  """The config (folder) name for these specs: readable prefix + a hash of everything."""
  digest = hashlib.sha256(_spec_json(layout, text, audio).encode()).hexdigest()[:12]
  prefix = f"{text.frontend}{len(text.symbols)}-{audio.sampling_rate}hz-{digest}"
  if layout.startswith("tfds:"):
    catalog = re.sub(r"[^a-z0-9]+", "_", layout[len("tfds:"):].lower()).strip("_")
    return f"{catalog}-{prefix}"
  return prefix


def _parse_catalog(layout: str) -> tuple[str, str | None]:
  name, _, split = layout[len("tfds:"):].partition(":")
  return name, (split or None)


def _builder_class(layout: str) -> type[_SpeechBuilder]:
  if layout in _BUILDERS:
    return _BUILDERS[layout]
  if layout.startswith("tfds:"):
    name, _ = _parse_catalog(layout)
    if name.split("/")[0] not in catalog_lib.CATALOG:
      raise OvjaxError(f"unknown catalog dataset {name!r} in layout {layout!r}; choose one of "
                       f"{', '.join(catalog_lib.CATALOG)}")
    return OvjaxCatalog
  raise OvjaxError(f"unknown corpus layout {layout!r}; choose one of {', '.join(LAYOUTS)} "
                   "or tfds:<name>")


def _canonical_source(layout: str, source) -> str:
  if layout.startswith("tfds:"):
    name, split = _parse_catalog(layout)
    root = os.path.abspath(source) if source else "<default TFDS data dir>"
    return f"{name}:{split or 'default'}@{root}"
  if source is None:
    raise OvjaxError(f"layout {layout!r} needs a source folder or manifest")
  return os.path.abspath(os.fspath(source))


# ------------------------------------------------------------------------------------------
# Build bookkeeping
# ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BuildReport:
  """What a build made and left out (also written as `build_log.json`)."""
  name: str                        # TFDS builder name, e.g. "ovjax_vctk"
  config: str                      # config name (from the specs' hash)
  path: str                        # the prepared folder: open_dataset(path) opens it
  items: int                       # corpus entries seen, dropped ones included
  records: dict[str, int]          # per split
  dropped: dict[str, int]          # per reason
  examples: dict[str, list[str]]   # a few keys per reason
  details: dict[str, list[str]]    # what went wrong, for those keys
  dropped_characters: dict[str, int]  # cleaned characters missing from the symbol table
  speakers: int
  seconds: float
  items_per_second: float
  reused: bool = False

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


class _Collector:
  """Counts drops and keeps each record's lengths, in one process (the non-Beam path)."""

  def __init__(self):
    self.dropped = collections.Counter()
    self.examples = collections.defaultdict(list)
    self.details = collections.defaultdict(list)
    self.characters = collections.Counter()
    self.rows = collections.defaultdict(dict)  # split -> {index: (frames, tokens, spk, key)}

  def drop(self, drop: Drop, log: bool = True) -> None:
    self.dropped[drop.reason] += 1
    if log and self.dropped[drop.reason] <= _WARN_PER_REASON:
      _LOG.warning("dropped %s (%s): %s", drop.key, drop.reason, drop.detail)
    if len(self.examples[drop.reason]) < _EXAMPLES_PER_REASON:
      self.examples[drop.reason].append(drop.key)
      self.details[drop.reason].append(drop.detail)

  def keep(self, split: str, index: int, frames: int, tokens: int, speaker_id: int, key: str,
           characters: dict[str, int]) -> None:
    self.rows[split][int(index)] = (int(frames), int(tokens), int(speaker_id), key)
    self.characters.update(characters)

  def lengths(self) -> dict[str, np.ndarray]:
    """Arrays per split in storage order (ascending item index)."""
    out = {}
    for split, rows in self.rows.items():
      ordered = [rows[i] for i in sorted(rows)]
      out[f"{split}.frames"] = np.asarray([r[0] for r in ordered], dtype=np.int32)
      out[f"{split}.tokens"] = np.asarray([r[1] for r in ordered], dtype=np.int32)
      out[f"{split}.speaker_id"] = np.asarray([r[2] for r in ordered], dtype=np.int32)
      out[f"{split}.keys"] = np.asarray([r[3] for r in ordered], dtype=str)
    return out


def _describe_characters(counts: collections.Counter) -> dict[str, int]:
  return {f"{ch!r} (U+{ord(ch):04X})": n for ch, n in counts.most_common()}


class _SpeechMetadata(tfds.core.MetadataDict):
  """metadata.json, plus `lengths.npz` with every record's lengths."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.lengths: dict[str, np.ndarray] = {}

  def save_metadata(self, data_dir):
    super().save_metadata(data_dir)
    if self.lengths:
      with epath.Path(data_dir, LENGTHS_NAME).open("wb") as f:
        np.savez(f, **self.lengths)


def validation_queues(speakers: Sequence[str], seed: int) -> list[list[int]]:
  """Per speaker, its item indices in the order validation tries them (shuffled), with the
  speakers themselves in a shuffled order: validation takes one usable item from each queue in
  turn, so it holds one item per speaker before any speaker gets a second."""
  rng = np.random.default_rng(seed)
  groups = collections.defaultdict(list)
  for i, speaker in enumerate(speakers):
    groups[speaker].append(i)
  queues = [rng.permutation(groups[s]).tolist() for s in sorted(groups)]
  return [queues[k] for k in rng.permutation(len(queues))]


def _record_summary(record: dict, symbols: Sequence[str]) -> tuple:
  return (int(record["frames"]), int(record["ids"].shape[0]), int(record["speaker_id"]),
          record["key"], dict(dropped_characters(record["phonemes"], symbols)))


def _beam_preprocess(index_item, text: TextSpec, audio: AudioSpec, speakers: dict[str, int]):
  """Beam worker: (index, item) -> (index, record), with drops and lengths as side outputs."""
  index, item = index_item
  result = preprocess_item(item, text, audio, speakers)
  if isinstance(result, Drop):
    yield beam.pvalue.TaggedOutput("drops", json.dumps(dataclasses.asdict(result)))
    return
  frames, tokens, speaker_id, key, characters = _record_summary(result, text.symbols)
  yield beam.pvalue.TaggedOutput("lengths", json.dumps(
      {"index": index, "frames": frames, "tokens": tokens, "speaker_id": speaker_id, "key": key,
       "characters": characters}))
  yield index, result


# ------------------------------------------------------------------------------------------
# Builders
# ------------------------------------------------------------------------------------------

def _features() -> tfds.features.FeaturesDict:
  text = tfds.features.Text()
  return tfds.features.FeaturesDict({
      # Raw bytes: TFDS would otherwise store int16 samples as an int64 varint list.
      "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16,
                                    encoding=tfds.features.Encoding.BYTES),
      "ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "frames": tfds.features.Tensor(shape=(), dtype=np.int32),
      "text": text, "phonemes": text, "speaker": text,
      "speaker_id": tfds.features.Tensor(shape=(), dtype=np.int32),
      "language": text, "key": text,
  })


class _SpeechBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared builder: subclasses only list their corpus' items (`_read_items`)."""

  VERSION = tfds.core.Version(VERSION)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):  # pylint: disable=no-self-argument
    # No checksums/README files beside the code (and TFDS' lookup of them needs the
    # importlib_resources package for an installed package).
    return None

  def __init__(self, *, beam_pipeline: bool = False, **kwargs):
    self._use_beam = beam_pipeline
    super().__init__(**kwargs)

  @abc.abstractmethod
  def _read_items(self, drops: list[Drop]) -> list[Item]:
    """The corpus' items; unusable corpus lines are appended to `drops`."""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Speech records for ovjax training: int16 audio, symbol ids, lengths.",
        features=_features(),
        disable_shuffling=True,
        metadata=_SpeechMetadata())

  # -- split planning ------------------------------------------------------------------

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: corpora are local.
    config = self.builder_config
    self._collector = _Collector()
    corpus_drops: list[Drop] = []
    self._items = self._read_items(corpus_drops)
    for drop in corpus_drops:
      self._collector.drop(drop, log=False)  # The corpus reader logged it.
    self._corpus_entries = len(self._items) + len(corpus_drops)
    if not self._items:
      raise OvjaxError(f"corpus {config.source} has no usable items "
                       f"({len(corpus_drops)} entries dropped)")
    self._speakers = sorted({item.speaker for item in self._items})
    self._speaker_ids = {s: i for i, s in enumerate(self._speakers)}
    self._cache: dict[int, dict | Drop] = {}
    chosen = self._choose_validation()
    train = [i for i in range(len(self._items)) if i not in chosen]
    splits = {"train": self._generate_examples("train", train)}
    if chosen:
      splits["validation"] = self._generate_examples("validation", sorted(chosen))
    return splits

  def _process(self, index: int) -> dict | Drop:
    config = self.builder_config
    return preprocess_item(self._items[index], config.text, config.audio, self._speaker_ids)

  def _choose_validation(self) -> set[int]:
    """`validation_items` usable items, one per speaker per round (see `validation_queues`)."""
    config = self.builder_config
    # Leave at least one item for training.
    wanted = min(config.validation_items, len(self._items) - 1)
    queues = validation_queues([it.speaker for it in self._items], config.seed)
    chosen = set()
    while len(chosen) < wanted and any(queues):
      for queue in queues:
        while queue and len(chosen) < wanted:
          index = queue.pop(0)
          result = self._process(index)
          # Kept for the pass that writes the split (Beam workers simply recompute).
          self._cache[index] = result
          if not isinstance(result, Drop):
            chosen.add(index)
            break
    return chosen

  # -- examples --------------------------------------------------------------------------

  def _generate_examples(self, split: str, indices: list[int]):
    if self._use_beam:
      return self._beam_examples(split, indices)
    return self._local_examples(split, indices)

  def _local_examples(self, split: str, indices: list[int]):
    symbols = self.builder_config.text.symbols
    for index in indices:
      result = self._cache.pop(index, None) or self._process(index)
      if isinstance(result, Drop):
        self._collector.drop(result)
        continue
      self._collector.keep(split, index, *_record_summary(result, symbols))
      yield index, result

  def _side_dir(self, split: str) -> epath.Path:
    # self.data_dir is TFDS' temporary folder while preparing (renamed when done).
    return epath.Path(self.data_dir) / _SIDE_DIR / split

  def _beam_examples(self, split: str, indices: list[int]):
    config = self.builder_config
    pairs = [(int(i), self._items[i]) for i in indices]
    process = functools.partial(_beam_preprocess, text=config.text, audio=config.audio,
                                speakers=self._speaker_ids)
    side = self._side_dir(split)

    @beam.ptransform_fn
    def examples(pipeline):
      out = (pipeline
             | "Items" >> beam.Create(pairs)
             | "Preprocess" >> beam.FlatMap(process).with_outputs("drops", "lengths",
                                                                  main="records"))
      _ = out.drops | "Drops" >> beam.io.WriteToText(str(side / "drops"), ".jsonl")
      _ = out.lengths | "Lengths" >> beam.io.WriteToText(str(side / "lengths"), ".jsonl")
      return out.records

    return examples()  # pylint: disable=no-value-for-parameter

  def _collect_side_outputs(self) -> None:
    """Beam path: drops and lengths from the workers' side-output files."""
    root = epath.Path(self.data_dir) / _SIDE_DIR
    for split_dir in sorted(root.iterdir()) if root.exists() else []:
      for path in sorted(split_dir.glob("drops*")):
        for line in path.read_text().splitlines():
          self._collector.drop(Drop(**json.loads(line)))
      for path in sorted(split_dir.glob("lengths*")):
        for line in path.read_text().splitlines():
          row = json.loads(line)
          self._collector.keep(split_dir.name, row["index"], row["frames"], row["tokens"],
                               row["speaker_id"], row["key"], row["characters"])

  # -- finishing -------------------------------------------------------------------------

  def _download_and_prepare(self, dl_manager, download_config):
    start = time.perf_counter()
    super()._download_and_prepare(dl_manager, download_config)
    if self._use_beam:
      self._collect_side_outputs()
    for leftover in (_SIDE_DIR, _CATALOG_AUDIO_DIR):
      path = epath.Path(self.data_dir) / leftover
      if path.exists():
        path.rmtree()
    self._fill_metadata(time.perf_counter() - start)

  def _fill_metadata(self, seconds: float) -> None:
    config, collected = self.builder_config, self._collector
    metadata = self.info.metadata
    metadata.lengths = collected.lengths()
    records = {split: int(metadata.lengths[f"{split}.frames"].size) for split in collected.rows}
    for split, count in records.items():
      stored = self.info.splits[split].num_examples
      if stored != count:
        raise AssertionError(f"{split}: {stored} records stored but {count} lengths collected")
    report = BuildReport(
        name=self.name, config=config.name, path="", items=self._corpus_entries,
        records=records, dropped=dict(collected.dropped), examples=dict(collected.examples),
        details=dict(collected.details),
        dropped_characters=_describe_characters(collected.characters),
        speakers=len(self._speakers), seconds=round(seconds, 3),
        items_per_second=round(self._corpus_entries / max(seconds, 1e-9), 2))
    metadata.update({
        "layout": config.layout, "source": config.source, "language": config.language,
        "seed": config.seed, "validation_items": config.validation_items,
        "text": dataclasses.asdict(config.text), "audio": dataclasses.asdict(config.audio),
        "speakers": self._speakers, "build_log": report.to_json(),
    })

  def identity(self) -> dict:
    """What must match for a prepared dataset to be reused."""
    config = self.builder_config
    return {"source": config.source, "language": config.language, "seed": config.seed,
            "validation_items": config.validation_items}


class OvjaxLjspeech(_SpeechBuilder):
  """An LJSpeech-layout corpus (metadata.csv + wavs/)."""

  def _read_items(self, drops):
    return corpus.ljspeech_items(self.builder_config.source, self.builder_config.language, drops)


class OvjaxVctk(_SpeechBuilder):
  """A VCTK corpus (0.92 or 0.80 layout), microphone 1."""

  def _read_items(self, drops):
    return corpus.vctk_items(self.builder_config.source, self.builder_config.language,
                             drops=drops)


class OvjaxManifest(_SpeechBuilder):
  """A JSON-lines manifest of audio files and transcripts."""

  def _read_items(self, drops):
    return corpus.manifest_items(self.builder_config.source, self.builder_config.language,
                                 drops=drops)


class OvjaxCatalog(_SpeechBuilder):
  """A prepared TFDS catalog dataset (see catalog.py).

  Its examples are streamed once into FLAC files (the catalog's own samples, lossless) in the
  temporary build folder, so the build reads them like any corpus: by index, in any process.
  """

  def _read_items(self, drops):
    del drops  # Catalog examples have no lines to be malformed.
    name, split = _parse_catalog(self.builder_config.layout)
    data_dir = self.builder_config.source.rpartition("@")[2]
    data_dir = None if data_dir.startswith("<") else data_dir
    folder = epath.Path(self.data_dir) / _CATALOG_AUDIO_DIR
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for n, item in enumerate(catalog_lib.catalog_items(name, split, data_dir,
                                                       self.builder_config.language)):
      items.append(export_item(item, folder / f"{n:08d}.flac"))
    return items


def export_item(item: Item, path: epath.Path) -> Item:
  """Writes an in-memory item's samples to `path` (16-bit FLAC) and returns a file item."""
  samples = np.clip(np.rint(np.asarray(item.audio, np.float32) * 32768.0), -32768, 32767)
  with path.open("wb") as f:
    sf.write(f, samples.astype(np.int16), item.sample_rate, format="FLAC", subtype="PCM_16")
  return Item(item.key, os.fspath(path), item.text, item.speaker, item.language)


_BUILDERS = {"ljspeech": OvjaxLjspeech, "vctk": OvjaxVctk, "manifest": OvjaxManifest}


# ------------------------------------------------------------------------------------------
# Public entry points
# ------------------------------------------------------------------------------------------

def _check_frontend(text: TextSpec) -> None:
  if text.frontend == "espeak":
    from ovjax.text import espeak  # pylint: disable=import-outside-toplevel
    if not espeak.espeak_available():
      raise OvjaxError("the espeak front end needs espeak-ng (apt-get install espeak-ng) and "
                       "the phonemizer package")


def _beam_download_config(beam_options):
  if beam_options is None:
    beam_options = ["--runner=DirectRunner"]
  if isinstance(beam_options, (list, tuple)):
    try:
      from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise OvjaxError("beam=True needs Apache Beam (pip install 'ovjax[beam]')") from None
    beam_options = PipelineOptions(list(beam_options))
  return tfds.download.DownloadConfig(beam_options=beam_options)


def _reused_report(builder: _SpeechBuilder, seconds: float) -> BuildReport:
  metadata = builder.info.metadata
  stored = {k: metadata.get(k) for k in builder.identity()}
  if stored != builder.identity():
    differs = ", ".join(f"{k} {stored[k]!r} (now {v!r})" for k, v in builder.identity().items()
                        if stored[k] != v)
    raise OvjaxError(f"{builder.data_dir} already holds this dataset with these specs but "
                     f"{differs}; use another data_dir or delete that folder")
  log = dict(metadata["build_log"])
  log.update(path=os.fspath(builder.data_dir), seconds=round(seconds, 3), reused=True)
  return BuildReport(**log)


@contextlib.contextmanager
def _tfds_bars_off():
  """TFDS' own progress bars (several per split, half-overwritten) would bury ovjax's report,
  which the build log and the caller's progress already give."""
  from tensorflow_datasets.core.utils import tqdm_utils
  before = getattr(tqdm_utils, "_active", True)
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(before)


def build_dataset(layout: str, source, data_dir, text: TextSpec, audio: AudioSpec, *,
                  validation_items: int = 8, seed: int = 0, beam: bool = False,
                  beam_options=None, language: str = "en-us") -> BuildReport:
  """Preprocesses a corpus into a TFDS dataset (array_record) under `data_dir`, or reuses it.

  Args:
    layout: "ljspeech", "vctk", "manifest", or "tfds:<catalog name>[:<split>]".
    source: the corpus folder, the manifest file, or (catalog) the TFDS data dir it was
      prepared in (None: TFDS' default).
    data_dir: where the dataset goes (`<data_dir>/ovjax_<layout>/<config>/1.0.0`).
    text, audio: the specs; they name the config.
    validation_items: validation split size (0: no validation split).
    seed: chooses the validation items.
    beam: build through Apache Beam (DirectRunner unless `beam_options` says otherwise).
    beam_options: Beam pipeline flags (list of str) or `PipelineOptions`.
    language: language of items that do not name one (all of LJSpeech/VCTK).

  Returns:
    The `BuildReport` (also `build_log.json` in the dataset folder).

  Raises:
    OvjaxError: unknown layout, missing corpus, no usable item, or a prepared dataset with
      these specs from another source/seed.
  """
  if not isinstance(text, TextSpec) or not isinstance(audio, AudioSpec):
    raise OvjaxError("build_dataset needs a TextSpec and an AudioSpec")
  if int(validation_items) < 0:
    raise OvjaxError(f"validation_items must be >= 0, got {validation_items}")
  cls = _builder_class(layout)
  _check_frontend(text)
  config = SpeechConfig(
      name=config_name(layout, text, audio),
      description=f"{layout}, {text.frontend} ids, {audio.sampling_rate} Hz",
      layout=layout, source=_canonical_source(layout, source), language=language, text=text,
      audio=audio, validation_items=int(validation_items), seed=int(seed))
  start = time.perf_counter()
  builder = cls(config=config, data_dir=os.fspath(data_dir), file_format="array_record",
                beam_pipeline=beam)
  if builder.is_prepared():
    return _reused_report(builder, time.perf_counter() - start)
  download_config = _beam_download_config(beam_options) if beam else None
  try:
    # Nothing is downloaded; a throwaway download_dir keeps TFDS' empty folders out of data_dir.
    with tempfile.TemporaryDirectory(prefix="ovjax-tfds-") as scratch, _tfds_bars_off():
      builder.download_and_prepare(download_dir=scratch, download_config=download_config)
  except OvjaxError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # TFDS refuses to write an empty split: say why it is empty.
    collector = getattr(builder, "_collector", None)
    if collector is not None and not collector.rows.get("train"):
      raise OvjaxError(f"no usable training items in {config.source}: dropped "
                       f"{dict(collector.dropped)}") from e
    raise
  log = dict(builder.info.metadata["build_log"])
  log.update(path=os.fspath(builder.data_dir))
  report = BuildReport(**log)
  epath.Path(builder.data_dir, LOG_NAME).write_text(json.dumps(report.to_json(), indent=1))
  _LOG.info("built %s/%s: %s records, dropped %s, %.1f items/s", report.name, report.config,
            report.records, report.dropped, report.items_per_second)
  return report


class Dataset:
  """A prepared dataset: random-access splits, lengths from metadata, speakers and specs."""

  def __init__(self, path):
    path = epath.Path(path)
    if not (path / "dataset_info.json").exists():
      raise OvjaxError(f"no prepared dataset in {path}")
    if not (path / LENGTHS_NAME).exists():
      raise OvjaxError(f"{path} is not an ovjax speech dataset (no {LENGTHS_NAME})")
    self.path = path
    self._builder = tfds.builder_from_directory(os.fspath(path))
    self._metadata = json.loads((path / "metadata.json").read_text())
    with (path / LENGTHS_NAME).open("rb") as f:
      self._lengths = dict(np.load(f))
    self._sources = {}
    self.speakers: list[str] = list(self._metadata["speakers"])
    self.text_spec = TextSpec(**self._metadata["text"])
    self.audio_spec = AudioSpec(**self._metadata["audio"])

  @property
  def splits(self) -> dict[str, int]:
    return {name: info.num_examples for name, info in self._builder.info.splits.items()}

  @property
  def info(self) -> dict:
    """Rate, hop, symbols, front end, limits, speakers, splits and where it came from."""
    meta = self._metadata
    return {**meta["audio"], **meta["text"], "speakers": self.speakers, "splits": self.splits,
            "layout": meta["layout"], "source": meta["source"], "language": meta["language"],
            "seed": meta["seed"], "name": self._builder.name, "path": os.fspath(self.path)}

  def _check_split(self, split: str) -> None:
    if split not in self.splits:
      raise OvjaxError(f"dataset {self.path} has no split {split!r} "
                       f"(it has {', '.join(self.splits)})")

  def source(self, split: str = "train"):
    """A random-access data source (tfds ArrayRecord); records are dicts of numpy values
    (text fields as UTF-8 bytes)."""
    self._check_split(split)
    if split not in self._sources:
      self._sources[split] = self._builder.as_data_source(split)
    return self._sources[split]

  def _array(self, split: str, what: str) -> np.ndarray:
    self._check_split(split)
    return self._lengths[f"{split}.{what}"]

  def frames(self, split: str = "train") -> np.ndarray:
    """int32 frame count of every record, in source order."""
    return self._array(split, "frames")

  def tokens(self, split: str = "train") -> np.ndarray:
    """int32 id count (blanks included) of every record, in source order."""
    return self._array(split, "tokens")

  def speaker_ids(self, split: str = "train") -> np.ndarray:
    return self._array(split, "speaker_id")

  def keys(self, split: str = "train") -> list[str]:
    return self._array(split, "keys").tolist()


def open_dataset(data_dir, layout: str | None = None, text: TextSpec | None = None,
                 audio: AudioSpec | None = None, *, config: str | None = None) -> Dataset:
  """Opens a prepared dataset: by `data_dir` + layout + specs (or `config`, a config name from a
  `BuildReport`), or directly by the dataset folder (`BuildReport.path`)."""
  root = epath.Path(data_dir)
  if (root / "dataset_info.json").exists():
    return Dataset(root)
  if layout is None:
    raise OvjaxError(f"{root} is not a dataset folder; give the layout and specs (or config)")
  cls = _builder_class(layout)
  if config is None:
    if text is None or audio is None:
      raise OvjaxError("open_dataset needs the TextSpec and AudioSpec (or a config name)")
    config = config_name(layout, text, audio)
  path = root / cls.name / config / VERSION
  if not (path / "dataset_info.json").exists():
    raise OvjaxError(f"no prepared {layout} dataset with these specs in {root} "
                     f"(looked in {path}); run build_dataset first")
  return Dataset(path)
