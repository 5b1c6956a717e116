"""The training input pipeline: corpora with bad items of every kind -> TFDS datasets -> batches.

Tiny corpora are cut from the real recordings in ../shared/reference/audio plus espeak-ng speech,
in every layout (LJSpeech, VCTK 0.92 and 0.80, a JSONL manifest, fake TFDS catalog datasets with
the catalogs' feature names); records are checked against `load_audio` and `text_to_sequence`.
"""
import importlib.util
import json
from pathlib import Path
import shutil
import subprocess
import sys
import time
import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from ovjax.audio.io import load_audio
from ovjax.data import builders, catalog, corpus, loader, preprocess, sampler
from ovjax.data.preprocess import AudioSpec, TextSpec
from ovjax.errors import OvjaxError
from ovjax.text import text_to_sequence
from ovjax.text.symbols import CJKE_SYMBOLS

from conftest import reference_path

SR = 22050
HOP = 256
AUDIO = AudioSpec(sampling_rate=SR, hop_length=HOP, min_seconds=0.5, max_seconds=4.0)
IPA = tuple(json.loads(reference_path("training_step", "converter_v2_step", "config.json")
                       .read_text())["ipa_symbols"])
ESPEAK = TextSpec("espeak", IPA)
CJKE = TextSpec("cjke", CJKE_SYMBOLS)

LONG_TEXT = ("Printing, in the only sense with which we are at present concerned, differs from "
             "most if not from all the arts and crafts represented in the exhibition.")


# ------------------------------------------------------------------------------------------
# Tiny corpora
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def speech():
  """Mono float32 speech at 44.1 kHz from two real recordings."""
  out = {}
  for name in ("demo_speaker0", "demo_speaker2"):
    data, rate = sf.read(reference_path("audio", f"{name}.mp3"), dtype="float32", always_2d=True)
    assert rate == 44100
    out[name] = data.mean(axis=1)
  return out


def _cut(speech, name, start, seconds, rate=44100):
  return speech[name][int(start * rate):int((start + seconds) * rate)]


def _espeak(path: Path, text: str) -> Path:
  subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
  return path


def _garbage(path: Path) -> Path:
  path.write_bytes(b"this is not audio at all " * 40)
  return path


@pytest.fixture(scope="module")
def ljspeech_root(tmp_path_factory, speech):
  root = tmp_path_factory.mktemp("ljspeech")
  wavs = root / "wavs"
  wavs.mkdir()
  rows = []

  def add(key, text, audio=None, normalized=None):
    if audio is not None:
      sf.write(wavs / f"{key}.wav", audio, 44100)
    rows.append(f"{key}|{text}|{text if normalized is None else normalized}")

  add("LJ001", "Printing, in the only sense.", _cut(speech, "demo_speaker0", 0.0, 2.0))
  add("LJ002", "Differs from most arts.", _cut(speech, "demo_speaker0", 2.0, 2.5),
      normalized="Differs from most if not all arts.")
  _espeak(wavs / "LJ003.wav", "Hello world, this is a test.")
  rows.append("LJ003|Hello world, this is a test.|")  # No normalized column: the raw text.
  add("LJ004", "The quick brown fox jumps over the lazy dog.",
      _cut(speech, "demo_speaker2", 5.0, 3.0))
  add("LJ005", "They wanted it.", _cut(speech, "demo_speaker0", 6.0, 1.5))  # ᵻ not in IPA
  _garbage(wavs / "LJ006.wav")
  rows.append("LJ006|An unreadable file.|An unreadable file.")
  add("LJ007", "", _cut(speech, "demo_speaker0", 8.0, 1.5), normalized="")
  add("LJ008", "!!! ...", _cut(speech, "demo_speaker0", 9.5, 1.5))
  add("LJ009", "Far too short.", _cut(speech, "demo_speaker0", 11.0, 0.3))
  add("LJ010", "Far too long.", _cut(speech, "demo_speaker2", 10.0, 5.0))
  add("LJ011", LONG_TEXT, _cut(speech, "demo_speaker0", 12.0, 0.6))
  add("LJ012", "Silence speaks.", np.zeros(44100, np.float32))
  rows.append("LJ013|Listed but never recorded.|Listed but never recorded.")
  rows.append("only-one-field")
  (root / "metadata.csv").write_text("\n".join(rows) + "\n")
  return root


LJ_GOOD = ["LJ001", "LJ002", "LJ003", "LJ004", "LJ005"]
LJ_DROPPED = {"unreadable audio": 2, "empty text": 1, "unspeakable text": 1, "too short": 1,
              "too long": 1, "more tokens than frames": 1, "silent audio": 1,
              "bad metadata line": 1}


@pytest.fixture(scope="module")
def vctk_root(tmp_path_factory, speech):
  """VCTK 0.92: three speakers, mic1 + mic2 FLAC, one transcript without audio, one speaker
  without transcripts, one utterance too short."""
  root = tmp_path_factory.mktemp("vctk")
  texts = {"p225_001": "Please call Stella.", "p225_002": "Ask her to bring these things.",
           "p225_003": "Six spoons of fresh snow peas.", "p226_001": "Five thick slabs of cheese.",
           "p226_002": "A snack for her brother Bob.", "p227_001": "We also need a small toy.",
           "p227_002": "She can scoop these things.", "p225_009": "No audio for this one."}
  seconds = {"p226_002": 0.3}
  start = 0.0
  for key in sorted(texts) + ["p228_001"]:
    speaker = key.split("_")[0]
    (root / "txt" / speaker).mkdir(parents=True, exist_ok=True)
    if key in texts:
      (root / "txt" / speaker / f"{key}.txt").write_text(texts[key] + "\n")
    if key == "p225_009":
      continue
    folder = root / "wav48_silence_trimmed" / speaker
    folder.mkdir(parents=True, exist_ok=True)
    piece = _cut(speech, "demo_speaker2" if speaker == "p226" else "demo_speaker0", start,
                 seconds.get(key, 1.6))
    start += 1.7
    sf.write(folder / f"{key}_mic1.flac", piece, 44100)
    sf.write(folder / f"{key}_mic2.flac", piece[::-1].copy(), 44100)
  return root, texts


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory, speech):
  root = tmp_path_factory.mktemp("manifest")
  elsewhere = tmp_path_factory.mktemp("elsewhere")
  (root / "audio").mkdir()
  sf.write(root / "audio" / "a.wav", _cut(speech, "demo_speaker0", 0.0, 2.0), 44100)
  sf.write(elsewhere / "b.flac", _cut(speech, "demo_speaker2", 0.0, 3.0), 44100)
  _espeak(root / "audio" / "c.wav", "We are testing the pipeline.")
  sf.write(root / "audio" / "d.wav", _cut(speech, "demo_speaker2", 3.0, 2.5), 44100)
  sf.write(root / "audio" / "e.wav", _cut(speech, "demo_speaker0", 3.0, 1.5), 44100)
  lines = [
      {"audio": "audio/a.wav", "text": "Hello there, how are you today?", "speaker": "anna",
       "language": "en"},
      {"audio": str(elsewhere / "b.flac"), "text": "你好，世界。今天天气很好。", "speaker": "bo",
       "language": "zh"},
      {"audio": "audio/c.wav", "text": "We are testing the pipeline.", "speaker": "anna",
       "language": "en", "key": "custom-key"},
      "{not json",
      {"audio": "audio/a.wav"},
      [1, 2],
      {"audio": "audio/d.wav", "text": "Another sentence for the second speaker.",
       "speaker": "bo"},  # language from the default
      {"audio": "audio/missing.wav", "text": "Nothing here.", "speaker": "anna",
       "language": "en"},
      {"audio": "audio/e.wav", "text": "Hello.", "speaker": "anna", "language": "klingon"},
  ]
  path = root / "manifest.jsonl"
  path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l, ensure_ascii=False)
                            for l in lines) + "\n\n")
  return path


def _int16(audio):
  return np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)


def _records(dataset, split):
  source = dataset.source(split)
  return [source[i] for i in range(len(source))]


def _check_records(dataset, split, items, text_spec):
  """Each record decodes to its item's audio (int16 round trip) and ids (text_to_sequence)."""
  by_key = {item.key: item for item in items}
  records = _records(dataset, split)
  speakers = dataset.speakers
  for record in records:
    item = by_key[record["key"].decode()]
    expected = _int16(load_audio(item.audio_path, SR))
    np.testing.assert_array_equal(record["audio"], expected)
    assert record["audio"].dtype == np.int16 and record["ids"].dtype == np.int32
    language = preprocess.frontend_language(item.language, text_spec.frontend)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # dropped characters: expected in some items
      ids = text_to_sequence(item.text, language, text_spec.symbols, text_spec.add_blank,
                             text_spec.frontend)
    np.testing.assert_array_equal(record["ids"], ids)
    assert record["frames"] == expected.size // HOP
    assert record["text"].decode() == item.text
    assert speakers[record["speaker_id"]] == item.speaker == record["speaker"].decode()
  # Lengths from metadata, in source order, without decoding.
  np.testing.assert_array_equal(dataset.frames(split), [r["frames"] for r in records])
  np.testing.assert_array_equal(dataset.tokens(split), [r["ids"].size for r in records])
  assert dataset.keys(split) == [r["key"].decode() for r in records]
  return records


# ------------------------------------------------------------------------------------------
# Builds
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lj_build(tmp_path_factory, ljspeech_root):
  data_dir = tmp_path_factory.mktemp("lj_data")
  report = builders.build_dataset("ljspeech", ljspeech_root, data_dir, ESPEAK, AUDIO,
                                  validation_items=2, seed=3)
  return data_dir, report


def test_ljspeech_build_counts_drops_and_decodes(lj_build, ljspeech_root):
  data_dir, report = lj_build
  assert report.records == {"train": 3, "validation": 2}
  assert report.dropped == LJ_DROPPED
  assert report.items == 14 and not report.reused
  assert report.examples["more tokens than frames"] == ["LJ011"]
  assert report.examples["bad metadata line"] == ["metadata.csv:14"]
  assert sorted(report.examples["unreadable audio"]) == ["LJ006", "LJ013"]
  assert "not found" in " ".join(report.details["unreadable audio"])
  # espeak writes ᵻ for "wanted"; the converter table lacks it: counted, not warned per item.
  assert report.dropped_characters.get("'ᵻ' (U+1D7B)", 0) >= 1
  log = json.loads((Path(report.path) / builders.LOG_NAME).read_text())
  assert log["dropped"] == LJ_DROPPED and log["records"] == report.records

  dataset = builders.open_dataset(data_dir, "ljspeech", ESPEAK, AUDIO)
  items = corpus.ljspeech_items(ljspeech_root)
  train = _check_records(dataset, "train", items, ESPEAK)
  valid = _check_records(dataset, "validation", items, ESPEAK)
  assert sorted(r["key"].decode() for r in train + valid) == LJ_GOOD
  # The normalized column wins; without one, the raw text is used.
  texts = {r["key"].decode(): r["text"].decode() for r in train + valid}
  assert texts["LJ002"] == "Differs from most if not all arts."
  assert texts["LJ003"] == "Hello world, this is a test."
  assert dataset.speakers == [ljspeech_root.resolve().name]
  info = dataset.info
  assert (info["sampling_rate"], info["hop_length"], tuple(info["symbols"])) == (SR, HOP, IPA)
  assert dataset.text_spec == ESPEAK and dataset.audio_spec == AUDIO
  assert "tensorflow" not in sys.modules


def test_rebuild_reuses_and_specs_never_collide(lj_build, ljspeech_root):
  data_dir, first = lj_build
  shard = next(Path(first.path).glob("*train.array_record*"))
  mtime = shard.stat().st_mtime_ns
  start = time.perf_counter()
  again = builders.build_dataset("ljspeech", ljspeech_root, data_dir, ESPEAK, AUDIO,
                                 validation_items=2, seed=3)
  assert again.reused and time.perf_counter() - start < 1.0
  assert (again.path, again.records, again.dropped) == (first.path, first.records, first.dropped)
  assert shard.stat().st_mtime_ns == mtime
  # Other specs: another config folder, never the same one.
  other_audio = AudioSpec(sampling_rate=16000, hop_length=HOP, min_seconds=0.5, max_seconds=4.0)
  other_text = TextSpec("espeak", IPA, add_blank=False)
  names = {builders.config_name("ljspeech", t, a)
           for t, a in [(ESPEAK, AUDIO), (ESPEAK, other_audio), (other_text, AUDIO)]}
  assert len(names) == 3
  # Same specs, different seed: refused rather than silently mixed.
  with pytest.raises(OvjaxError, match="seed"):
    builders.build_dataset("ljspeech", ljspeech_root, data_dir, ESPEAK, AUDIO,
                           validation_items=2, seed=4)


def test_vctk_build_spreads_validation_over_speakers(tmp_path, vctk_root):
  root, texts = vctk_root
  drops = []
  items = corpus.vctk_items(root, drops=drops)
  assert sorted(i.key for i in items) == sorted(k for k in texts if k != "p225_009")
  assert all(i.audio_path.endswith("_mic1.flac") for i in items)
  assert {(d.key, d.reason) for d in drops} == {("p225_009", "missing audio"),
                                                ("p228_001", "missing transcript")}
  assert corpus.vctk_items(root, mic="mic2")[0].audio_path.endswith("_mic2.flac")

  report = builders.build_dataset("vctk", root, tmp_path, ESPEAK, AUDIO, validation_items=3)
  assert report.records == {"train": 3, "validation": 3}
  assert report.dropped == {"missing audio": 1, "missing transcript": 1, "too short": 1}
  assert report.speakers == 3
  dataset = builders.open_dataset(report.path)
  assert dataset.speakers == ["p225", "p226", "p227"]
  valid = _check_records(dataset, "validation", items, ESPEAK)
  _check_records(dataset, "train", items, ESPEAK)
  assert sorted(r["speaker"].decode() for r in valid) == ["p225", "p226", "p227"]
  np.testing.assert_array_equal(dataset.speaker_ids("validation"),
                                [r["speaker_id"] for r in valid])


def test_vctk_080_layout(tmp_path, speech):
  for speaker, n in (("p225", 1), ("p225", 2), ("p301", 1)):
    (tmp_path / "wav48" / speaker).mkdir(parents=True, exist_ok=True)
    (tmp_path / "txt" / speaker).mkdir(parents=True, exist_ok=True)
    key = f"{speaker}_{n:03d}"
    sf.write(tmp_path / "wav48" / speaker / f"{key}.wav", _cut(speech, "demo_speaker0", n, 1.0),
             44100)
    (tmp_path / "txt" / speaker / f"{key}.txt").write_text(f"Sentence {n}.")
  items = corpus.vctk_items(tmp_path, language="en-gb")
  assert [(i.key, i.speaker, i.text, i.language) for i in items] == [
      ("p225_001", "p225", "Sentence 1.", "en-gb"), ("p225_002", "p225", "Sentence 2.", "en-gb"),
      ("p301_001", "p301", "Sentence 1.", "en-gb")]
  assert items[0].audio_path == str(tmp_path / "wav48" / "p225" / "p225_001.wav")


def test_manifest_build_with_cjke(tmp_path, manifest_path):
  drops = []
  items = corpus.manifest_items(manifest_path, drops=drops)
  assert [(d.key, d.reason) for d in drops] == [
      ("manifest.jsonl:4", "bad manifest line"), ("manifest.jsonl:5", "bad manifest line"),
      ("manifest.jsonl:6", "bad manifest line")]
  assert [i.key for i in items][:3] == ["audio/a.wav", items[1].audio_path, "custom-key"]
  assert items[0].audio_path == str(manifest_path.parent / "audio" / "a.wav")
  assert items[3].language == "en-us"  # the default fills a line without a language

  report = builders.build_dataset("manifest", manifest_path, tmp_path, CJKE, AUDIO,
                                  validation_items=2, seed=1)
  assert report.records == {"train": 2, "validation": 2}
  assert report.dropped == {"bad manifest line": 3, "unreadable audio": 1,
                            "unsupported language": 1}
  assert report.examples["bad manifest line"] == [f"manifest.jsonl:{n}" for n in (4, 5, 6)]
  dataset = builders.open_dataset(tmp_path, "manifest", CJKE, AUDIO)
  assert dataset.speakers == ["anna", "bo"]
  valid = _check_records(dataset, "validation", items, CJKE)
  train = _check_records(dataset, "train", items, CJKE)
  assert sorted(r["speaker"].decode() for r in valid) == ["anna", "bo"]
  phonemes = {r["key"].decode(): r["phonemes"].decode() for r in valid + train}
  assert "↓" in phonemes[items[1].audio_path]  # Mandarin tones from the cjke cleaners


def test_bad_inputs_are_one_line_errors(tmp_path):
  with pytest.raises(OvjaxError, match="not found"):
    corpus.ljspeech_items(tmp_path / "nowhere")
  with pytest.raises(OvjaxError, match="metadata.csv"):
    corpus.ljspeech_items(tmp_path)
  with pytest.raises(OvjaxError, match="wav48"):
    corpus.vctk_items(tmp_path)
  with pytest.raises(OvjaxError, match="manifest not found"):
    corpus.manifest_items(tmp_path / "m.jsonl")
  with pytest.raises(OvjaxError, match="unknown corpus layout"):
    builders.build_dataset("librivox", tmp_path, tmp_path, ESPEAK, AUDIO)
  with pytest.raises(OvjaxError, match="not found"):
    builders.build_dataset("vctk", tmp_path / "nowhere", tmp_path, ESPEAK, AUDIO)
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"audio": "x.wav", "text": "Hello."}\n{"audio": "y.wav", "text": "Hi."}\n')
  with pytest.raises(OvjaxError, match="no usable training items.*unreadable audio"):
    builders.build_dataset("manifest", bad, tmp_path / "out", CJKE, AUDIO)
  with pytest.raises(OvjaxError, match="build_dataset first"):
    builders.open_dataset(tmp_path, "vctk", ESPEAK, AUDIO)
  with pytest.raises(OvjaxError, match="front end"):
    TextSpec("arpabet", IPA)
  with pytest.raises(OvjaxError, match="max_seconds"):
    AudioSpec(min_seconds=3.0, max_seconds=2.0)


def test_min_frames_drops_items_shorter_than_the_segment(speech, tmp_path):
  sf.write(tmp_path / "a.wav", _cut(speech, "demo_speaker0", 0.0, 0.6), 44100)  # 51 frames
  item = corpus.Item("a", str(tmp_path / "a.wav"), "Hi.", "s", "en-us")
  assert isinstance(preprocess.preprocess(item, ESPEAK, AUDIO), dict)
  strict = AudioSpec(sampling_rate=SR, hop_length=HOP, min_frames=64)
  assert preprocess.preprocess(item, ESPEAK, strict) == "too short"


# ------------------------------------------------------------------------------------------
# TFDS catalog datasets (fakes with the catalogs' feature names; the real ones need TensorFlow)
# ------------------------------------------------------------------------------------------

class FakeCatalog(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Writes given rows under given features (Tensor instead of Audio: Audio needs TF)."""
  VERSION = tfds.core.Version("1.0.0")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):  # pylint: disable=no-self-argument
    return None

  def __init__(self, *, features, splits, metadata, **kwargs):
    self._features, self._splits, self._metadata = features, splits, metadata
    super().__init__(**kwargs)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(self._features),
                                 metadata=tfds.core.MetadataDict(self._metadata))

  def _split_generators(self, dl_manager):
    return {name: self._generate_examples(rows) for name, rows in self._splits.items()}

  def _generate_examples(self, rows):
    yield from enumerate(rows)


def _fake_catalog(data_dir: Path, folder: str, features, splits, metadata=None):
  work = data_dir / "_work" / folder.replace("/", "_")
  builder = FakeCatalog(features=features, splits=splits, metadata=metadata or {},
                        data_dir=str(work), file_format="array_record")
  builder.download_and_prepare()
  target = data_dir / folder
  target.parent.mkdir(parents=True, exist_ok=True)
  shutil.move(builder.data_dir, target)


def _pcm(speech, start, seconds, rate):
  audio = librosa.resample(_cut(speech, "demo_speaker0", start, seconds), orig_sr=44100,
                           target_sr=rate, res_type="soxr_hq")
  return np.clip(np.rint(audio * 32767), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def fake_catalogs(tmp_path_factory, speech):
  root = tmp_path_factory.mktemp("tfds")
  text, int16 = tfds.features.Text(), tfds.features.Tensor(shape=(None,), dtype=np.int16)
  rows = {
      "ljspeech": [{"id": f"LJ{i}", "speech": _pcm(speech, i, 1.5, 22050), "text": f"Raw {i}",
                    "text_normalized": "" if i == 1 else f"Normalized number {i}."}
                   for i in range(3)],
      "vctk": [{"id": f"{s}_{i}", "text": f"Call Stella {i}.", "speech": _pcm(speech, i, 1.2, 48000),
                "speaker": s, "gender": "F"} for i, s in enumerate(["p225", "p226", "p226"])],
      "libritts": [{"speech": _pcm(speech, i, 1.4, 24000).astype(np.int64),
                    "text_original": f"Chapter {i}!", "text_normalized": f"Chapter {i}.",
                    "speaker_id": 19 + i % 2, "chapter_id": 7, "id": f"19_7_{i}"}
                   for i in range(3)],
  }
  _fake_catalog(root, "ljspeech/1.1.1",
                {"id": text, "speech": int16, "text": text, "text_normalized": text},
                {"train": rows["ljspeech"]}, {"sample_rate": 22050})
  _fake_catalog(root, "vctk/mic1/1.0.1",
                {"id": text, "text": text, "speech": int16,
                 "speaker": tfds.features.ClassLabel(names=["p225", "p226"]),
                 "gender": tfds.features.ClassLabel(names=["F", "M"])},
                {"train": rows["vctk"]})  # no sample_rate anywhere: the catalog's 48 kHz
  _fake_catalog(root, "libritts/1.0.1",
                {"speech": tfds.features.Tensor(shape=(None,), dtype=np.int64),
                 "text_original": text, "text_normalized": text,
                 "speaker_id": tfds.features.Tensor(shape=(), dtype=np.int64),
                 "chapter_id": tfds.features.Tensor(shape=(), dtype=np.int64), "id": text},
                {"train_clean100": rows["libritts"][:2], "dev_clean": rows["libritts"][2:]},
                {"sample_rate": 24000})
  return root, rows


def test_catalog_items_map_fields_and_resample(fake_catalogs, tmp_path):
  root, rows = fake_catalogs
  lj = {i.key: i for i in catalog.catalog_items("ljspeech", data_dir=root)}
  assert {k: (i.text, i.speaker, i.sample_rate) for k, i in lj.items()} == {
      "LJ0": ("Normalized number 0.", "ljspeech", 22050),
      "LJ1": ("Raw 1", "ljspeech", 22050),  # empty normalized text: the raw text
      "LJ2": ("Normalized number 2.", "ljspeech", 22050)}
  np.testing.assert_array_equal(lj["LJ0"].audio, rows["ljspeech"][0]["speech"] / 32768.0)

  vctk = {i.key: i for i in catalog.catalog_items("vctk", data_dir=root)}
  assert {k: (i.speaker, i.sample_rate) for k, i in vctk.items()} == {
      "p225_0": ("p225", 48000), "p226_1": ("p226", 48000), "p226_2": ("p226", 48000)}
  libri = list(catalog.catalog_items("libritts", data_dir=root))  # default: the train_* splits
  assert sorted((i.key, i.text, i.speaker, i.sample_rate) for i in libri) == [
      ("19_7_0", "Chapter 0.", "19", 24000), ("19_7_1", "Chapter 1.", "20", 24000)]
  both = list(catalog.catalog_items("libritts", "train_clean100+dev_clean", root))
  assert sorted(i.key for i in both) == ["dev_clean/19_7_2", "train_clean100/19_7_0",
                                         "train_clean100/19_7_1"]

  # In-memory 48 kHz samples give what the same samples read from a file give.
  item = vctk["p225_0"]
  sf.write(tmp_path / "same.wav", rows["vctk"][0]["speech"], 48000, subtype="PCM_16")
  record = preprocess.preprocess(item, ESPEAK, AUDIO)
  np.testing.assert_array_equal(record["audio"], _int16(load_audio(tmp_path / "same.wav", SR)))
  assert record["frames"] == int(round(1.2 * SR)) // HOP

  with pytest.raises(OvjaxError, match="not prepared"):
    list(catalog.catalog_items("ljspeech", data_dir=tmp_path))
  with pytest.raises(OvjaxError, match="unknown catalog"):
    list(catalog.catalog_items("librispeech", data_dir=root))
  with pytest.raises(OvjaxError, match="no split"):
    list(catalog.catalog_items("vctk", "test", root))


def test_real_catalog_features_without_tensorflow_are_a_one_line_error(fake_catalogs, tmp_path):
  if importlib.util.find_spec("tensorflow") is not None:
    pytest.skip("TensorFlow is installed: real Audio features load here")
  root, _ = fake_catalogs
  shutil.copytree(root / "ljspeech", tmp_path / "ljspeech")
  # What `tfds build ljspeech` writes for its speech feature.
  features_file = tmp_path / "ljspeech" / "1.1.1" / "features.json"
  features = json.loads(features_file.read_text())
  features["featuresDict"]["features"]["speech"] = {
      "pythonClassName": "tensorflow_datasets.core.features.audio_feature.Audio",
      "audio": {"dtype": "int16", "sampleRate": 22050, "encoding": "none",
                "shape": {"dimensions": ["-1"]}}}
  features_file.write_text(json.dumps(features))
  with pytest.raises(OvjaxError, match="needs tensorflow .*tf extra"):
    list(catalog.catalog_items("ljspeech", data_dir=tmp_path))


def test_build_from_catalog(fake_catalogs, tmp_path):
  root, _ = fake_catalogs
  report = builders.build_dataset("tfds:vctk", root, tmp_path, ESPEAK, AUDIO, validation_items=1)
  assert report.records == {"train": 2, "validation": 1} and report.dropped == {}
  dataset = builders.open_dataset(tmp_path, "tfds:vctk", ESPEAK, AUDIO)
  assert dataset.speakers == ["p225", "p226"]
  speakers = {s: i for i, s in enumerate(dataset.speakers)}
  expected = {i.key: preprocess.preprocess(i, ESPEAK, AUDIO, speakers)
              for i in catalog.catalog_items("vctk", data_dir=root)}
  for record in _records(dataset, "train") + _records(dataset, "validation"):
    want = expected[record["key"].decode()]
    np.testing.assert_array_equal(record["audio"], want["audio"])
    np.testing.assert_array_equal(record["ids"], want["ids"])
    assert record["speaker_id"] == want["speaker_id"]
  assert not list(Path(report.path).glob("_*"))  # the exported FLAC files are gone
  assert "tensorflow" not in sys.modules


def test_beam_build_equals_local_build(tmp_path, lj_build, ljspeech_root):
  pytest.importorskip("apache_beam", reason="the beam extra (apache-beam) is not installed")
  _, local = lj_build
  report = builders.build_dataset("ljspeech", ljspeech_root, tmp_path, ESPEAK, AUDIO,
                                  validation_items=2, seed=3, beam=True)
  assert (report.records, report.dropped, report.dropped_characters) == (
      local.records, local.dropped, local.dropped_characters)
  beam_ds, local_ds = builders.open_dataset(report.path), builders.open_dataset(local.path)
  for split in ("train", "validation"):
    assert beam_ds.keys(split) == local_ds.keys(split)
    np.testing.assert_array_equal(beam_ds.frames(split), local_ds.frames(split))
    for a, b in zip(_records(beam_ds, split), _records(local_ds, split)):
      assert a["key"] == b["key"]
      np.testing.assert_array_equal(a["audio"], b["audio"])
      np.testing.assert_array_equal(a["ids"], b["ids"])


# ------------------------------------------------------------------------------------------
# Sampler
# ------------------------------------------------------------------------------------------

def _lengths(n=200, seed=0):
  rng = np.random.default_rng(seed)
  frames = rng.integers(40, 1100, n)
  tokens = np.minimum(frames, rng.integers(5, 300, n))
  return frames, tokens


BUCKETS = (300, 400, 500, 600, 700, 800, 900, 1000)


def test_bucket_plan_shapes_cover_every_item_and_shuffle_by_epoch():
  frames, tokens = _lengths()
  plan = sampler.BucketPlan(frames, tokens, 8, BUCKETS, seed=5)
  assert plan.excluded == int(np.sum(frames > 1000))
  for (bound, token_len), members in zip(plan.shapes, plan.buckets):
    assert bound in BUCKETS and token_len % 8 == 0
    assert token_len >= tokens[members].max() > token_len - 8
    assert frames[members].max() <= bound
  included = np.flatnonzero(frames <= 1000)
  expected_rows = sum(-(-m.size // 8) * 8 for m in plan.buckets)
  epochs = [plan.epoch(e) for e in range(3)]
  for batches in epochs:
    assert len(batches) == plan.steps_per_epoch
    rows = np.concatenate([idx for _, idx in batches])
    assert rows.size == expected_rows and set(rows.tolist()) == set(included.tolist())
    for bucket, idx in batches:
      assert idx.shape == (8,) and set(idx.tolist()) <= set(plan.buckets[bucket].tolist())
      # Repeats only pad a bucket: a batch repeats an item only if the bucket is tiny.
      assert len(set(idx.tolist())) == min(8, plan.buckets[bucket].size)
  flat = [np.concatenate([i for _, i in b]) for b in epochs]
  assert not np.array_equal(flat[0], flat[1])
  again = sampler.BucketPlan(frames, tokens, 8, BUCKETS, seed=5)
  assert all(np.array_equal(a[1], b[1]) and a[0] == b[0]
             for a, b in zip(again.epoch(1), epochs[1]))
  other = sampler.BucketPlan(frames, tokens, 8, BUCKETS, seed=6)
  assert not np.array_equal(np.concatenate([i for _, i in other.epoch(1)]), flat[1])
  with pytest.raises(OvjaxError, match="ascending"):
    sampler.BucketPlan(frames, tokens, 8, (400, 300), seed=0)


# ------------------------------------------------------------------------------------------
# Loader
# ------------------------------------------------------------------------------------------

def _synthetic_source(frames, tokens):
  """In-memory records whose content encodes their index (a list is a random-access source)."""
  records = []
  for i, (f, t) in enumerate(zip(frames, tokens)):
    samples = int(f) * HOP + (i % HOP)
    records.append({"ids": (np.arange(t) % 50 + i).astype(np.int32),
                    "audio": ((np.arange(samples) + i) % 20000).astype(np.int16),
                    "speaker_id": np.int32(i % 7)})
  return records


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def synthetic():
  frames, tokens = _lengths(60, seed=1)
  plan = sampler.BucketPlan(frames, tokens, 4, BUCKETS, seed=2)
  return _synthetic_source(frames, tokens), plan


def test_loader_batches_have_bucket_shapes_and_the_planned_rows(synthetic):
  source, plan = synthetic
  it = iter(loader.TrainLoader(source, plan, HOP, process_index=0, process_count=1))
  batches = _take(it, plan.steps_per_epoch + 2)
  shapes = {(4, t, f * HOP + HOP) for f, t in plan.shapes}
  for step, batch in enumerate(batches):
    epoch, index = divmod(step, plan.steps_per_epoch)
    assert (batch["epoch"], batch["index"]) == (epoch, index)
    assert (batch["ids"].shape[0], batch["ids"].shape[1], batch["audio"].shape[1]) in shapes
    assert {k: v.dtype for k, v in batch.items() if isinstance(v, np.ndarray)} == {
        "ids": np.int32, "id_lengths": np.int32, "audio": np.float32, "audio_lengths": np.int32,
        "frame_lengths": np.int32, "speaker_id": np.int32}
    _, rows = plan.epoch(epoch)[index]
    for row, i in enumerate(rows):
      record = source[i]
      n, t = record["audio"].size, record["ids"].size
      np.testing.assert_array_equal(batch["audio"][row, :n], record["audio"] / 32768.0)
      assert not batch["audio"][row, n:].any() and not batch["ids"][row, t:].any()
      np.testing.assert_array_equal(batch["ids"][row, :t], record["ids"])
      assert (batch["audio_lengths"][row], batch["id_lengths"][row],
              batch["frame_lengths"][row], batch["speaker_id"][row]) == (n, t, n // HOP, i % 7)


def test_two_processes_read_disjoint_halves_of_the_global_batch(synthetic):
  source, plan = synthetic
  whole = _take(iter(loader.TrainLoader(source, plan, HOP, process_index=0, process_count=1)), 6)
  halves = [_take(iter(loader.TrainLoader(source, plan, HOP, process_index=p, process_count=2,
                                          num_threads=1)), 6) for p in range(2)]
  for step in range(6):
    first, second = halves[0][step], halves[1][step]
    for key in ("ids", "audio", "audio_lengths", "speaker_id"):
      np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), whole[step][key])
    _, rows = plan.epoch(0)[step]
    # Process p holds rows [2p, 2p + 2) of the global batch, nothing else.
    np.testing.assert_array_equal(first["speaker_id"], rows[:2] % 7)
    np.testing.assert_array_equal(second["speaker_id"], rows[2:] % 7)
  with pytest.raises(OvjaxError, match="split over"):
    loader.TrainLoader(source, plan, HOP, process_index=0, process_count=3)


def test_loader_state_resumes_exactly_across_an_epoch_boundary(synthetic):
  source, plan = synthetic
  steps = plan.steps_per_epoch
  reference = _take(iter(loader.TrainLoader(source, plan, HOP, process_index=0,
                                            process_count=1)), steps + 4)
  run = loader.TrainLoader(source, plan, HOP, process_index=0, process_count=1, prefetch=8)
  it = iter(run)
  _take(it, steps - 2)
  state = run.get_state()
  assert state == {"epoch": 0, "index": steps - 2}
  json.dumps(state)
  _take(it, 3)  # keep reading past the checkpoint; the restored run must not see these
  restored = loader.TrainLoader(source, plan, HOP, process_index=0, process_count=1)
  restored.set_state(json.loads(json.dumps(state)))
  for got, want in zip(_take(iter(restored), 6), reference[steps - 2:]):
    _same(got, want)
  assert restored.get_state() == {"epoch": 1, "index": 4}
  # set_state on a running iterator moves it too.
  run.set_state({"epoch": 1, "index": 1})
  _same(next(it), reference[steps + 1])
  with pytest.raises(OvjaxError, match="outside the plan"):
    run.set_state({"epoch": 0, "index": steps})
  with pytest.raises(OvjaxError, match="loader state"):
    run.set_state({"step": 3})


def test_loader_and_eval_batch_on_a_built_dataset(lj_build):
  data_dir, _ = lj_build
  dataset = builders.open_dataset(data_dir, "ljspeech", ESPEAK, AUDIO)
  plan = sampler.BucketPlan(dataset.frames(), dataset.tokens(), 2, (200, 300), seed=0)
  batch = next(iter(loader.TrainLoader(dataset.source(), plan, HOP, process_index=0,
                                       process_count=1)))
  _, rows = plan.epoch(0)[0]
  records = [dataset.source()[int(i)] for i in rows]
  for row, record in enumerate(records):
    n = record["audio"].size
    np.testing.assert_array_equal(batch["audio"][row, :n], record["audio"] / 32768.0)
    assert batch["frame_lengths"][row] == record["frames"]
  valid = loader.eval_batch(dataset.source("validation"), [0, 1], HOP)
  assert valid["ids"].shape[1] % 8 == 0 and valid["audio"].shape[0] == 2
  assert valid["audio"].shape[1] == dataset.frames("validation").max() * HOP + HOP
  fixed = loader.eval_batch(dataset.source("validation"), [1], HOP, frames=300, tokens=200)
  assert fixed["audio"].shape == (1, 300 * HOP + HOP) and fixed["ids"].shape == (1, 200)
  with pytest.raises(OvjaxError, match="does not fit"):
    loader.eval_batch(dataset.source("validation"), [0], HOP, frames=10, tokens=200)
  assert "tensorflow" not in sys.modules
