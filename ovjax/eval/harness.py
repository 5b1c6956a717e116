"""The evaluation harness behind `ovjax eval`: does an output sound like its reference, still like
its source, and can its words be understood?

Items are (source, reference, output[, text][, target]) records: a JSONL file of them, or the
folder `ovjax batch` wrote (its report.jsonl names each job's source, references and text).
Per item, with every recording read at 16 kHz for the speaker encoder and the ASR:

* `sim_output_reference` (after conversion) and `sim_source_reference` (before): cosine of
  resemblyzer speaker embeddings (ovjax.eval.speaker_encoder, in JAX); `sim_output_source`;
* with a text: WER and CER (pocketsphinx + jiwer) of the output, and of the source when there is
  one, so the two compare under the same ASR;
* with a target (ground truth of the output): MCD with DTW in dB.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ovjax.errors import OvjaxError

EMBED_RATE = 16000
_ITEM_KEYS = {"id", "source", "reference", "output", "text", "target"}


@dataclasses.dataclass(frozen=True)
class Item:
  id: str
  output: Path
  reference: tuple[Path, ...] = ()
  source: Path | None = None
  text: str | None = None
  target: Path | None = None


def _path(value, base: Path, where: str, key: str) -> Path:
  if not isinstance(value, str) or not value:
    raise OvjaxError(f"{where}: {key!r} must be a non-empty path string")
  return (base / value) if not os.path.isabs(value) else Path(value)


def item_from_json(obj, base: Path, where: str) -> Item:
  """One JSON object -> an `Item` (relative paths are relative to `base`)."""
  if not isinstance(obj, dict):
    raise OvjaxError(f"{where}: expected a JSON object")
  unknown = set(obj) - _ITEM_KEYS
  if unknown:
    raise OvjaxError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                     f"(known: {', '.join(sorted(_ITEM_KEYS))})")
  if "output" not in obj:
    raise OvjaxError(f"{where}: no 'output'")
  refs = obj.get("reference", [])
  refs = [refs] if isinstance(refs, str) else refs
  if not isinstance(refs, list):
    raise OvjaxError(f"{where}: 'reference' must be a path or a list of paths")
  text = obj.get("text")
  if text is not None and not isinstance(text, str):
    raise OvjaxError(f"{where}: 'text' must be a string")
  return Item(
      id=str(obj.get("id") or Path(str(obj["output"])).stem),
      output=_path(obj["output"], base, where, "output"),
      reference=tuple(_path(r, base, where, "reference") for r in refs),
      source=None if obj.get("source") is None else _path(obj["source"], base, where, "source"),
      text=text,
      target=None if obj.get("target") is None else _path(obj["target"], base, where, "target"))


def read_items(path) -> list[Item]:
  """A JSONL file of items, or a folder `ovjax batch` wrote (its done jobs)."""
  path = Path(path)
  if path.is_dir():
    report = path / "report.jsonl"
    if not report.is_file():
      raise OvjaxError(f"{path}: no report.jsonl (not a folder `ovjax batch` wrote)")
    items = []
    for n, obj in _jsonl(report):
      if obj.get("status") not in ("done", "skipped") or not obj.get("out"):
        continue
      entry = {k: obj[k] for k in ("id", "source", "reference", "text") if obj.get(k)}
      entry["id"] = obj.get("id") or Path(obj["out"]).stem
      items.append(item_from_json(dict(entry, output=obj["out"]), path, f"{report}:{n}"))
  elif path.is_file():
    items = [item_from_json(obj, path.parent, f"{path}:{n}") for n, obj in _jsonl(path)]
  else:
    raise OvjaxError(f"{path}: no such file or folder")
  if not items:
    raise OvjaxError(f"{path}: no items to evaluate")
  return items


def _jsonl(path: Path):
  try:
    lines = path.read_text(encoding="utf-8").splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise OvjaxError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
  for n, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      yield n, json.loads(line)
    except json.JSONDecodeError as e:
      raise OvjaxError(f"{path}:{n}: not JSON ({e.msg})") from None


class Evaluator:
  """Loads each recording once and embeds it once; `item(item)` -> its metrics."""

  def __init__(self, speaker_weights=None, asr: bool = True, plot_dir=None,
               progress: Callable[[str], None] = lambda message: None):
    from ovjax.eval import speaker_encoder
    self._encoder = speaker_encoder
    self._weights, self._params = speaker_weights, None
    self.asr = asr
    self.plot_dir = None if plot_dir is None else Path(plot_dir)
    self.progress = progress
    self._waves: dict[Path, np.ndarray] = {}
    self._embeddings: dict[Path, np.ndarray] = {}
    self._transcripts: dict[Path, str] = {}
    self._transcriber = None

  @property
  def params(self):
    """The speaker encoder's weights, read when first needed (pictures alone need none)."""
    if self._params is None:
      self._params = self._encoder.load_params(self._weights)
    return self._params

  def wave(self, path: Path) -> np.ndarray:
    from ovjax.audio.io import load_audio
    key = path.resolve()
    if key not in self._waves:
      self._waves[key] = load_audio(path, EMBED_RATE)
    return self._waves[key]

  def embed(self, paths: Sequence[Path]) -> dict[Path, np.ndarray]:
    """Embeds every path not embedded yet in one batched call."""
    todo = list(dict.fromkeys(p.resolve() for p in paths if p.resolve() not in self._embeddings))
    if todo:
      waves = [self.wave(p) for p in todo]
      for p, e in zip(todo, self._encoder.embed_utterances(self.params, waves, EMBED_RATE)):
        self._embeddings[p] = e
    return {p: self._embeddings[p.resolve()] for p in paths}

  def speaker(self, paths: Sequence[Path]) -> np.ndarray:
    """One speaker's embedding from several recordings: the normalised mean (resemblyzer's)."""
    e = np.mean([self.embed([p])[p] for p in paths], axis=0)
    return e / np.linalg.norm(e)

  def transcript(self, path: Path) -> str:
    from ovjax.eval.asr import Transcriber
    key = path.resolve()
    if key not in self._transcripts:
      if self._transcriber is None:
        self._transcriber = Transcriber()
      self._transcripts[key] = self._transcriber(self.wave(path), EMBED_RATE)
    return self._transcripts[key]

  def item(self, item: Item) -> dict:
    from ovjax.eval.asr import error_rates
    from ovjax.eval.mcd import mel_cepstral_distortion
    similarity = self._encoder.similarity
    row = {"id": item.id, "output": str(item.output)}
    self.embed([item.output, *item.reference] + ([item.source] if item.source else []))
    out = self.speaker([item.output])
    if item.reference:
      ref = self.speaker(item.reference)
      row["sim_output_reference"] = similarity(out, ref)
      if item.source is not None:
        row["sim_source_reference"] = similarity(self.speaker([item.source]), ref)
    if item.source is not None:
      row["sim_output_source"] = similarity(out, self.speaker([item.source]))
    if item.text is not None and self.asr:
      row["transcript_output"] = self.transcript(item.output)
      rates = error_rates(item.text, row["transcript_output"])
      row["wer_output"], row["cer_output"] = rates["wer"], rates["cer"]
      if item.source is not None:
        row["transcript_source"] = self.transcript(item.source)
        rates = error_rates(item.text, row["transcript_source"])
        row["wer_source"], row["cer_source"] = rates["wer"], rates["cer"]
    if item.target is not None:
      row["mcd_db"] = mel_cepstral_distortion(self.wave(item.output), self.wave(item.target),
                                              EMBED_RATE)
    if self.plot_dir is not None:
      row["plot"] = str(self.plot(item))
    return row

  def plot(self, item: Item) -> Path:
    from ovjax.eval.plots import log_mel_of, save_mel_png
    panels = {}
    if item.source is not None:
      panels["source"] = item.source
    if item.reference:
      panels["reference"] = item.reference[0]
    panels["output"] = item.output
    mels = {f"{name}: {path.name}": log_mel_of(self.wave(path), EMBED_RATE)
            for name, path in panels.items()}
    path = self.plot_dir / f"{_safe_name(item.id)}.png"
    save_mel_png(path, mels, EMBED_RATE, 256, title=item.id)
    return path


def _safe_name(text: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120] or "item"


SUMMARY_KEYS = ("sim_output_reference", "sim_source_reference", "sim_output_source",
                "wer_output", "wer_source", "cer_output", "cer_source", "mcd_db")


def summarize(rows: Sequence[dict]) -> dict:
  """Means over the items that have each metric, and how many have it."""
  out = {}
  for key in SUMMARY_KEYS:
    values = [r[key] for r in rows if key in r and r[key] is not None and math.isfinite(r[key])]
    if values:
      out[key] = float(np.mean(values))
      out[f"{key}_items"] = len(values)
  if "sim_output_reference" in out and "sim_source_reference" in out:
    paired = [r["sim_output_reference"] - r["sim_source_reference"] for r in rows
              if "sim_output_reference" in r and "sim_source_reference" in r]
    out["sim_gain"] = float(np.mean(paired))
  return out


def evaluate(items: Sequence[Item], speaker_weights=None, asr: bool = True, plot_dir=None,
             progress: Callable[[str], None] = lambda message: None) -> dict:
  """Items -> {"items": [per-item metrics], "summary": means}; one bad item is reported as such
  (its "error"), the others still count."""
  evaluator = Evaluator(speaker_weights, asr, plot_dir, progress)
  rows = []
  for n, item in enumerate(items, 1):
    progress(f"[{n}/{len(items)}] {item.id}")
    try:
      rows.append(evaluator.item(item))
    except OvjaxError as e:
      rows.append({"id": item.id, "output": str(item.output), "error": str(e).splitlines()[0]})
  good = [r for r in rows if "error" not in r]
  return {"items": rows, "summary": summarize(good), "failed": len(rows) - len(good)}


_COLUMNS = (("sim out-ref", "sim_output_reference"), ("sim src-ref", "sim_source_reference"),
            ("sim out-src", "sim_output_source"), ("WER out", "wer_output"),
            ("WER src", "wer_source"), ("MCD dB", "mcd_db"))


def format_table(report: dict) -> str:
  """The report as a terminal table: one row per item, then the means."""
  rows = report["items"]
  columns = [(title, key) for title, key in _COLUMNS
             if any(key in r for r in rows)]
  header = ("item",) + tuple(t for t, _ in columns)
  body = []
  errors = [f"{r['id']}: {r['error']}" for r in rows if "error" in r]
  for r in rows:
    if "error" in r:
      continue
    body.append((r["id"],) + tuple("-" if key not in r else f"{r[key]:.3f}" for _, key in columns))
  summary = report["summary"]
  body.append(("mean",) + tuple("-" if key not in summary else f"{summary[key]:.3f}"
                                for _, key in columns))
  widths = [max(len(str(row[i])) for row in [header] + body) for i in range(len(header))]
  line = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
  out = [line(header), line(tuple("-" * w for w in widths))] + [line(b) for b in body]
  if "sim_gain" in summary:
    out.append(f"similarity to the reference: {summary['sim_source_reference']:.3f} before, "
               f"{summary['sim_output_reference']:.3f} after ({summary['sim_gain']:+.3f})")
  return "\n".join(out + [f"not evaluated: {e}" for e in errors])
