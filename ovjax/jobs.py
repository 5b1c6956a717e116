"""Bulk jobs: a JSONL file of conversion, TTS and clone jobs, run in batches with resume.

One JSON object per line; the keys choose the kind:

* conversion: `source` + (`reference` (a path or a list) | `target_se`), optional `source_se`,
  `tau`, `vad`.
* tts: `text` without `reference`/`target_se`; optional `style`, `language`, `speed`,
  `noise_scale`, `noise_scale_w`, `sdp_ratio`.
* clone: `text` + (`reference` | `target_se`), the tts options, `tau`, `vad`.

Every kind takes `id`, `out` (a .wav name inside the output folder; default `<id or line>.wav`)
and `seed`. Relative paths in a job are relative to the jobs file's folder, so a jobs file and
its data can move together.

Life of a run (`parse_jobs`, then `JobRunner.run`):
1. Parsing needs no model (and imports no JAX): a malformed line, an unknown key, a missing file
   or a job the run has no model for becomes a failed `Job`; the rest go on. A job whose output
   the previous run's report records as done, with the same size and SHA-256, is skipped, which
   is what makes a re-run resume; a file that merely exists there (truncated by a crash outside
   ovjax, written by someone else, a symlink) is redone.
2. `JobRunner` checks what needs the models (styles, languages, speakable text, embedding files),
   then runs the jobs in groups: conversions sorted by length and handed to
   `ToneColorConverter.convert` a group at a time (so its length buckets and device batching
   apply), texts through `BaseSpeakerTTS.infer_ids` a group at a time. Tone-colour embeddings are
   cached per run (by resolved paths + VAD flag) and the uncached ones of a group are embedded in
   one batch. If a group's batched call fails with an `OvjaxError`, its jobs are retried one by
   one so only the bad job fails.

Overlap (`prefetch=True`, the default): a host thread decodes and resamples the next groups'
sources and references (`Prefetch`, a bounded queue) while the current group computes, and a
writer thread writes outputs, hashes them and reports each job (`Writer`), in the order the jobs
end, so the device does not wait on files. `prefetch=False` does the same work inline, in the same
order, with the same outputs and report.

Noise: every job passes its own seed to the library, so with tau > 0 (or TTS noise) a job's
output is what running it alone with that seed gives, whatever group it ran in or however a
resumed run regroups the jobs.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import queue
import re
import stat
import threading
import warnings
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from ovjax import batching
from ovjax.errors import OvjaxError, TextError
from ovjax.fileio import atomic_output, inside, require_regular_file

REPORT_NAME = "report.jsonl"
KINDS = ("convert", "tts", "clone")

_COMMON = {"id", "out", "seed"}
_TARGET = {"reference", "target_se"}
_TTS = {"text", "style", "language", "speed", "noise_scale", "noise_scale_w", "sdp_ratio"}
_KEYS = {
    "convert": _COMMON | _TARGET | {"source", "source_se", "tau", "vad"},
    "tts": _COMMON | _TTS,
    "clone": _COMMON | _TARGET | _TTS | {"tau", "vad"},
}
_ALL_KEYS = set().union(*_KEYS.values())
# Defaults of the single-job commands (`ovjax convert / tts / clone`).
_DEFAULTS = dict(tau=0.3, speed=1.0, noise_scale=0.667, noise_scale_w=0.6, sdp_ratio=0.2)
# The temporary files `atomic_output` makes beside a target: `.NAME.<12 hex>.tmp`.
_TEMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")


class JobError(OvjaxError):
  """One job is unusable (the run goes on with the others)."""


def one_line(text) -> str:
  return " ".join(str(text).split())


@dataclasses.dataclass(eq=False)  # Identity semantics: jobs are dict keys while they run.
class Job:
  """One line of a jobs file. `status` is None while pending, then done / skipped / failed."""
  line: int
  kind: str | None = None
  id: str | None = None
  out: str | None = None  # Output name relative to the output folder (POSIX form).
  spec: dict = dataclasses.field(default_factory=dict)  # Validated options, paths resolved.
  status: str | None = None
  error: str | None = None
  seconds_audio: float | None = None
  output_bytes: int | None = None  # Size and SHA-256 of the written output: what resume checks.
  output_sha256: str | None = None

  def fail(self, error) -> None:
    self.status, self.error = "failed", one_line(error) or type(error).__name__

  def report_entry(self) -> dict:
    seconds = None if self.seconds_audio is None else round(self.seconds_audio, 3)
    entry = {"line": self.line, "id": self.id, "out": self.out, "status": self.status,
             "error": self.error, "seconds_audio": seconds}
    if self.output_sha256 is not None:
      entry["bytes"], entry["sha256"] = self.output_bytes, self.output_sha256
    # What `ovjax eval` needs to score the output: its source, references and text.
    for key in ("source", "reference", "text"):
      value = self.spec.get(key)
      if value is not None:
        entry[key] = ([str(v) for v in value] if isinstance(value, (list, tuple)) else
                      str(value))
    return entry

  @property
  def label(self) -> str:
    return f"line {self.line}" + ("" if self.id is None else f" ({self.id})")


# -- parsing (no models) ---------------------------------------------------------------------------


def read_lines(path) -> list[tuple[int, str | None]]:
  """(line number, text) of the non-blank lines; text None for a line that is not UTF-8.

  Raises OvjaxError (one line) for a missing, unreadable or empty jobs file."""
  path = Path(path)
  if not path.exists():
    raise OvjaxError(f"{path}: no such jobs file")
  if not path.is_file():
    raise OvjaxError(f"{path}: not a file")
  try:
    data = path.read_bytes()
  except OSError as e:
    raise OvjaxError(f"{path}: cannot read ({e.strerror or type(e).__name__})")
  if data.startswith(b"\xef\xbb\xbf"):  # A BOM some editors write.
    data = data[3:]
  lines = []
  for n, raw in enumerate(data.split(b"\n"), start=1):
    if not raw.strip():
      continue  # Blank lines (and the final newline) are not jobs.
    try:
      lines.append((n, raw.decode("utf-8").strip()))
    except UnicodeDecodeError:
      lines.append((n, None))
  if not lines:
    raise OvjaxError(f"{path}: no jobs (the file is empty)")
  return lines


def _no_duplicate_keys(pairs):
  out = {}
  for key, value in pairs:
    if key in out:
      raise JobError(f"key {key!r} given twice")
    out[key] = value
  return out


def _show(value) -> str:
  """A short JSON form of any parsed value (huge ints, deep nesting and lone surrogates too)."""
  if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
    return f"an integer of {value.bit_length()} bits"
  try:
    text = json.dumps(value)
  except (ValueError, RecursionError):
    text = type(value).__name__
  return text if len(text) <= 60 else text[:57] + "..."


def _number(obj, key) -> float:
  """obj[key] within batching.NUMBER_RANGES[key] (the CLI's and the API's range)."""
  value = obj[key]
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise JobError(f"{key!r} must be a number, got {_show(value)}")
  return batching.check_number(key, value, repr(key), JobError)


def _unicode(value: str, key) -> str:
  try:
    value.encode("utf-8")  # A lone surrogate ("\ud800" in the JSON) is no file name or text.
  except UnicodeEncodeError:
    raise JobError(f"{key!r} is not valid Unicode text (a lone surrogate)") from None
  return value


def _string(obj, key) -> str:
  value = obj[key]
  if not isinstance(value, str) or not value.strip():
    raise JobError(f"{key!r} must be a non-empty string, got {_show(value)}")
  return _unicode(value, key)


def _output_name(name: str, key: str) -> str:
  """A .wav name inside the output folder: no absolute paths, no `..`, no hidden temp names,
  at most batching.MAX_NAME_CHARS characters and no folder or file name over 255 bytes."""
  if len(name) > batching.MAX_NAME_CHARS:
    raise JobError(f"{key!r}: {len(name)} characters, more than the {batching.MAX_NAME_CHARS} "
                   "allowed")
  _unicode(name, key)
  if "\0" in name:
    raise JobError(f"{key!r}: a file name cannot contain NUL")
  path = PurePosixPath(name.replace(os.sep, "/"))
  if path.is_absolute() or name.startswith("~") or re.match(r"^[A-Za-z]:", name):
    raise JobError(f"{key!r} {name!r}: must be relative to the output folder")
  if ".." in path.parts:
    raise JobError(f"{key!r} {name!r}: must stay inside the output folder (no '..')")
  parts = [p for p in path.parts if p != "."]
  if not parts:
    raise JobError(f"{key!r} {name!r}: not a file name")
  if _TEMP.match(parts[-1]):  # Would be taken for a stale temporary and removed.
    raise JobError(f"{key!r} {name!r}: a reserved temporary-file name")
  if not parts[-1].lower().endswith(".wav"):
    raise JobError(f"{key!r} {name!r}: the output must be a .wav file")
  # The temporary `.NAME.<12 hex>.tmp` beside it must fit too: 255 bytes less 18.
  if any(len(p.encode("utf-8")) > 255 - 18 for p in parts):
    raise JobError(f"{key!r} {batching.show(name)}: a folder or file name longer than "
                   f"{255 - 18} bytes")
  return "/".join(parts)


def output_path(out_dir, name: str) -> Path:
  """Where job output `name` is written: `out_dir/name` with its folders' symlinks resolved.

  Raises JobError when a folder on the way is a symlink leading outside the real `out_dir`
  (`link/x.wav` with `link -> /elsewhere`): every file a run writes stays inside it. A symlink at
  the name itself is harmless: the atomic rename replaces the link, never its target.
  """
  root = Path(out_dir).resolve()
  target = root / name
  folder = target.parent.resolve()  # Follows every symlink of the folders that exist.
  if not inside(folder, root):
    raise JobError(f"output {name}: its folder leads outside the output folder (to {folder}) "
                   "through a symbolic link")
  return folder / target.name


def _path(obj, key, base_dir: Path) -> Path:
  return base_dir / os.path.expanduser(_string(obj, key))


def _audio_file(path: Path, what: str) -> Path:
  # The messages of `load_audio`, so a job fails the same way as `ovjax convert` would.
  if not path.exists():
    raise JobError(f"{what}: audio file not found: {path}")
  if path.is_dir():
    raise JobError(f"{what}: audio path is a directory, not a file: {path}")
  # A FIFO or device would block the header read that sorts the jobs.
  require_regular_file(path, f"{what}: audio file {path}", JobError)
  return path


def _se_file(path: Path, key: str) -> Path:
  if not path.is_file():
    raise JobError(f"{key!r}: no such tone-colour embedding file: {path}")
  return path


def _kind(obj) -> str:
  if "source" in obj and "text" in obj:
    raise JobError("a job has 'source' (a conversion) or 'text' (tts/clone), not both")
  if "source" in obj:
    return "convert"
  if "text" in obj:
    return "clone" if _TARGET & obj.keys() else "tts"
  raise JobError("nothing to do: a job needs 'source' (a conversion) or 'text' (tts/clone)")


def parse_job(line: int, text: str | None, base_dir: Path, has_converter: bool,
              has_base: bool, seed: int = 0, vad: bool = True) -> Job:
  """One line -> a Job, pending or failed (with a one-line error)."""
  job = Job(line)
  try:
    if text is None:
      raise JobError("not UTF-8 text")
    try:
      obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
      raise JobError(f"bad JSON: {e.msg} (column {e.colno})") from None
    except ValueError:  # An integer of more than 4300 digits.
      raise JobError("bad JSON: an integer of more than 4300 digits") from None
    except RecursionError:
      raise JobError("bad JSON: nested too deeply") from None
    if not isinstance(obj, dict):
      raise JobError(f"a job must be a JSON object, got {type(obj).__name__}")
    # id and out first, so even a job that fails below is reported under its name.
    if "id" in obj:
      value = obj["id"]
      if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 1000:  # str() refuses more than 4300 digits.
          raise JobError(f"'id': {_show(value)}, more than {batching.MAX_NAME_CHARS} digits")
        value = str(value)
      if not isinstance(value, str) or not value.strip():
        raise JobError(f"'id' must be a non-empty string or an integer, got {_show(value)}")
      if len(value) > batching.MAX_NAME_CHARS:
        raise JobError(f"'id': {len(value)} characters, more than the "
                       f"{batching.MAX_NAME_CHARS} allowed")
      job.id = _unicode(value, "id")
    if "out" in obj:
      job.out = _output_name(_string(obj, "out"), "out")
    else:
      job.out = _output_name(f"{job.id if job.id is not None else line}.wav", "id")
    unknown = sorted(obj.keys() - _ALL_KEYS)
    if unknown:
      raise JobError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_ALL_KEYS))})")
    job.kind = kind = _kind(obj)
    extra = sorted(obj.keys() - _KEYS[kind])
    if extra:
      raise JobError(f"{extra[0]!r} does not apply to a {kind} job")
    job.spec = _parse_spec(obj, kind, base_dir, seed, vad)
    if kind in ("convert", "clone") and not has_converter:
      raise JobError(f"a {kind} job needs --converter")
    if kind in ("tts", "clone") and not has_base:
      raise JobError(f"a {kind} job needs --base")
  except JobError as e:
    job.fail(e)
  return job


def _parse_spec(obj, kind: str, base_dir: Path, seed: int, vad: bool) -> dict:
  spec = {"seed": seed, "vad": vad}
  if "seed" in obj:
    spec["seed"] = batching.check_seed(obj["seed"], "'seed'", JobError)
  if "vad" in obj:
    if not isinstance(obj["vad"], bool):
      raise JobError(f"'vad' must be true or false, got {_show(obj['vad'])}")
    spec["vad"] = obj["vad"]
  for key in ("tau", "speed", "noise_scale", "noise_scale_w", "sdp_ratio"):
    if key in _KEYS[kind]:
      spec[key] = _DEFAULTS[key]
  for key in ("tau", "speed", "noise_scale", "noise_scale_w", "sdp_ratio"):
    if key in obj:
      spec[key] = _number(obj, key)
  if kind == "convert":
    spec["source"] = _audio_file(_path(obj, "source", base_dir), "'source'")
    if "source_se" in obj:
      spec["source_se"] = _se_file(_path(obj, "source_se", base_dir), "source_se")
  if kind in ("convert", "clone"):
    if "reference" in obj and "target_se" in obj:
      raise JobError("give 'reference' or 'target_se', not both")
    if "reference" not in obj and "target_se" not in obj:
      raise JobError("a conversion needs 'reference' or 'target_se'")
    if "target_se" in obj:
      spec["target_se"] = _se_file(_path(obj, "target_se", base_dir), "target_se")
    else:
      refs = obj["reference"]
      if isinstance(refs, str):
        refs = [refs]
      if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise JobError("'reference' must be a path or a non-empty list of paths")
      spec["reference"] = tuple(_audio_file(_path({"reference": r}, "reference", base_dir),
                                            "'reference'") for r in refs)
  if kind in ("tts", "clone"):
    if not isinstance(obj["text"], str):
      raise JobError(f"'text' must be a string, got {_show(obj['text'])}")
    if not obj["text"].strip():
      raise JobError("empty text, nothing to speak")
    _unicode(obj["text"], "text")
    batching.check_text(obj["text"], "'text'", JobError)
    spec["text"] = obj["text"]
    for key in ("style", "language"):
      spec[key] = _string(obj, key) if key in obj else None
  return spec


def parse_jobs(path, out_dir, has_converter: bool, has_base: bool, seed: int = 0,
               vad: bool = True) -> list[Job]:
  """Every job of a jobs file, in order: pending, skipped or failed.

  A job is skipped when `out_dir/report.jsonl` (the previous run's report) says its output was
  written, and the file there has the recorded size and SHA-256. Raises OvjaxError only for a
  jobs file that cannot be used at all (missing, empty)."""
  path, out_dir = Path(path), Path(out_dir)
  finished = finished_outputs(out_dir / REPORT_NAME)
  batching.check_seed(seed, "--seed")  # The default seed of every job.
  jobs = [parse_job(n, text, path.parent, has_converter, has_base, seed, vad)
          for n, text in read_lines(path)]
  claimed = {}
  for job in jobs:
    if job.out is None:
      continue
    if job.out in claimed:  # Even a failed job claims its name: fixing it must not clash later.
      if job.status is None:
        job.fail(f"output {job.out} is also the output of line {claimed[job.out]}")
      continue
    claimed[job.out] = job.line
    if job.status is None:
      try:
        target = output_path(out_dir, job.out)
      except JobError as e:
        job.fail(e)
        continue
      if target.is_dir():
        job.fail(f"output {target} is a directory")
      elif job.out in finished:
        recorded = finished[job.out]
        if file_digest(target) == recorded:  # Done by an earlier run and untouched since.
          job.status = "skipped"
          job.output_bytes, job.output_sha256 = recorded
          job.seconds_audio = None
  return jobs


# A report line is ~300 bytes; this is a million jobs' worth, far more than any real run.
MAX_REPORT_BYTES = 512 * 2**20


def _open_own_file(path):
  """`path` opened for binary reading if it is a regular file of its own (not through a symlink,
  never blocking on a FIFO); None otherwise."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
  except OSError:
    return None
  f = os.fdopen(fd, "rb")
  if not stat.S_ISREG(os.fstat(fd).st_mode):
    f.close()
    return None
  return f


def finished_outputs(report_path) -> dict[str, tuple[int, str]]:
  """{out: (bytes, sha256)} of the outputs a previous report records as written (done, or
  skipped after a check). No report, an unreadable one or malformed lines: nothing is finished,
  so those jobs are simply redone."""
  f = _open_own_file(report_path)
  if f is None:
    return {}
  finished = {}
  with f:
    if os.fstat(f.fileno()).st_size > MAX_REPORT_BYTES:
      return {}
    for raw in f.read(MAX_REPORT_BYTES).split(b"\n"):
      try:
        entry = json.loads(raw)
        out, size, digest = entry["out"], entry["bytes"], entry["sha256"]
      except (ValueError, TypeError, KeyError, RecursionError):
        continue
      if (entry.get("status") in ("done", "skipped") and isinstance(out, str)
          and isinstance(size, int) and not isinstance(size, bool) and isinstance(digest, str)):
        finished[out] = (size, digest)
  return finished


def file_digest(path) -> tuple[int, str] | None:
  """(size, SHA-256 hex) of a regular file at `path`, not followed through a symlink; None when
  there is none (missing, a link, a FIFO, unreadable)."""
  f = _open_own_file(path)
  if f is None:
    return None
  with f:
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(1 << 20):
      digest.update(chunk)
      size += len(chunk)
  return size, digest.hexdigest()


def remove_stale_temporaries(out_dir, jobs: Iterable[Job]) -> int:
  """Remove the temporaries a killed run left beside this run's outputs; returns how many.

  Only `.NAME.<hex>.tmp` files of the jobs' own output names, inside the output folder, are
  touched."""
  names = collections.defaultdict(set)
  for job in jobs:
    if job.out is not None:
      try:
        target = output_path(out_dir, job.out)
      except JobError:
        continue  # A folder outside the output folder is not ours to clean.
      names[target.parent].add(target.name)
  removed = 0
  for folder, wanted in names.items():
    if not folder.is_dir():
      continue
    for entry in folder.iterdir():
      match = _TEMP.match(entry.name)
      if match and match.group("name") in wanted and entry.is_file():
        try:
          entry.unlink()
          removed += 1
        except OSError:
          pass  # Not ours to fight over; the job's own write does not need it gone.
  return removed


class Report:
  """`report.jsonl`: one line per job, appended (and flushed) as each job ends, so a killed run
  keeps a partial report; `close` rewrites it atomically, in line order.

  Never written through a symlink: the run starts by renaming a fresh empty file over the name
  (which replaces a link there, not its target) and appends with O_NOFOLLOW, so a link slipped in
  meanwhile fails the open instead of being followed.
  """

  def __init__(self, path):
    self.path = Path(path)
    if self.path.is_dir() and not self.path.is_symlink():
      raise OvjaxError(f"{self.path}: is a directory")
    try:
      with atomic_output(self.path):
        pass  # This run's report only: an empty regular file, replacing whatever was there.
      fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
      self._file = os.fdopen(fd, "w", encoding="utf-8")
    except OSError as e:
      raise OvjaxError(f"cannot write {self.path} ({e.strerror or type(e).__name__})")

  def add(self, job: Job) -> None:
    self._file.write(json.dumps(job.report_entry(), ensure_ascii=False) + "\n")
    self._file.flush()

  def close(self, jobs: Iterable[Job]) -> None:
    self._file.close()
    entries = sorted((j.report_entry() for j in jobs if j.status is not None),
                     key=lambda e: e["line"])
    with atomic_output(self.path) as tmp:
      tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries),
                     encoding="utf-8")


# -- overlap: host work on threads beside the device ----------------------------------------------


class _Raised:
  """An exception carried from a worker thread to the thread that consumes its results."""

  def __init__(self, error: BaseException):
    self.error = error


class Prefetch:
  """`(item, load(item))` for each item, in order, with `load` run on a daemon thread at most
  `depth` results ahead of the consumer: decoding and resampling overlap the consumer's compute,
  and memory stays bounded. An exception in `load` is raised here, on the consumer's thread, when
  its item's turn comes (as it would have been inline). Use as a context manager: leaving stops
  the thread."""

  _END = object()

  def __init__(self, items: Iterable, load: Callable, depth: int = 1):
    self._items, self._load = list(items), load
    self._queue = queue.Queue(maxsize=max(1, int(depth)))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._work, name="ovjax-prefetch", daemon=True)
    self._thread.start()

  def _work(self) -> None:
    try:
      for item in self._items:
        if self._stop.is_set():
          return
        self._put((item, self._load(item)))
      self._put(self._END)
    except BaseException as e:  # noqa: BLE001 - handed to the consumer, never lost.
      self._put(_Raised(e))

  def _put(self, value) -> None:
    while not self._stop.is_set():  # Polled, so `close` never waits on a full queue.
      try:
        self._queue.put(value, timeout=0.1)
        return
      except queue.Full:
        pass

  def __iter__(self):
    while (value := self._queue.get()) is not self._END:
      if isinstance(value, _Raised):
        raise value.error
      yield value

  def close(self) -> None:
    self._stop.set()
    self._thread.join()  # At most the one load in progress.

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False


class Inline(Prefetch):
  """`Prefetch` without the thread: each item loaded when its turn comes."""

  def __init__(self, items: Iterable, load: Callable, depth: int = 1):
    self._items, self._load = list(items), load

  def __iter__(self):
    for item in self._items:
      yield item, self._load(item)

  def close(self) -> None:
    pass


class Writer:
  """Runs submitted tasks (write an output, report a job) in order on a daemon thread behind a
  bounded queue. The first exception a task raises stops the tasks after it (so nothing unwritten
  is ever reported) and is raised on the submitting thread: by the next `submit`, or by `close`.
  `close` drains the queue first, so work already finished is written even when the run is
  interrupted."""

  def __init__(self, depth: int = 16):
    self._queue = queue.Queue(maxsize=max(1, int(depth)))  # Backpressure: bounded memory.
    self._error = None
    self._thread = threading.Thread(target=self._work, name="ovjax-writer", daemon=True)
    self._thread.start()

  def _work(self) -> None:
    while (task := self._queue.get()) is not None:
      if self._error is None:
        try:
          task()
        except BaseException as e:  # noqa: BLE001 - raised on the submitting thread.
          self._error = e

  def _raise(self) -> None:
    if self._error is not None:
      raise self._error

  def submit(self, task: Callable[[], None]) -> None:
    self._raise()
    self._queue.put(task)

  def close(self, raise_error: bool = True) -> None:
    self._queue.put(None)
    self._thread.join()
    if raise_error:
      self._raise()


class InlineWriter:
  """`Writer` without the thread: each task runs when submitted."""

  def submit(self, task: Callable[[], None]) -> None:
    task()

  def close(self, raise_error: bool = True) -> None:
    pass


def write_output(job: Job, out_dir, wave, sampling_rate: int) -> None:
  """Write a job's output atomically (a killed run leaves no half file) and record its length,
  size and SHA-256; a write error fails the job alone."""
  from ovjax.audio.io import write_wav
  path = Path(out_dir) / job.out
  try:
    # Checked again at write time: a folder may have become a symlink since the jobs were read.
    path = output_path(out_dir, job.out)
    write_wav(path, wave, sampling_rate)
  except OvjaxError as e:
    return job.fail(e)
  except OSError as e:
    return job.fail(f"cannot write {path}: {e.strerror or type(e).__name__}")
  job.status, job.seconds_audio = "done", len(wave) / sampling_rate
  # What the next run checks before skipping this job (hashing a few MB costs milliseconds).
  digest = file_digest(path)
  if digest is not None:
    job.output_bytes, job.output_sha256 = digest


def conversion_groups(jobs: list[Job], group_size: int,
                      group_seconds: float | None = None) -> list[list[Job]]:
  """The groups conversions run in: by tau (one call converts with one tau; each job keeps its
  own seed), in job order, `group_size` jobs at a time, or with group_seconds, as many as hold
  that much audio (at most 8 x group_size jobs). The converter packs each group's utterances into
  rows (`ovjax.packing`): a group of mixed lengths worth several full rows leaves one part-filled
  row, so few row lengths (programs) are ever compiled."""
  import soundfile as sf

  def seconds(job):  # From the header; a bad file fails when it loads.
    try:
      return sf.info(str(job.spec["source"])).duration
    except Exception:  # noqa: BLE001
      return 0.0

  by_tau = collections.defaultdict(list)
  for job in jobs:
    by_tau[job.spec["tau"]].append(job)
  by_budget = group_seconds is not None
  max_jobs = 8 * group_size if by_budget else group_size
  groups = []
  for same_tau in by_tau.values():
    group, total = [], 0.0
    for job in same_tau:
      group.append(job)
      total += seconds(job) if by_budget else 0.0
      if len(group) >= max_jobs or (by_budget and total >= group_seconds):
        groups.append(group)
        group, total = [], 0.0
    if group:
      groups.append(group)
  return groups


def group_seconds(converter, group_size: int) -> float:
  """Audio per conversion group: group_size full packed rows of the converter's."""
  return group_size * converter.max_frames * converter.config.hop_length / \
      converter.sampling_rate


@dataclasses.dataclass
class Loaded:
  """A conversion group's audio, read ahead: source path -> waveform (or its OvjaxError), and
  reference cache key -> [(name, waveform or OvjaxError)] for the keys this group embeds first."""
  sources: dict
  references: dict


# -- running (models) ------------------------------------------------------------------------------


def reference_key(paths, vad: bool) -> tuple:
  """The embedding cache key of a list of reference recordings."""
  return ("reference", tuple(str(Path(p).resolve()) for p in paths), bool(vad))


def source_key(path, vad: bool) -> tuple:
  return ("source", str(Path(path).resolve()), bool(vad))


class JobRunner:
  """Runs pending jobs in groups with a converter and/or a base speaker.

  converter: a `ToneColorConverter` (conversion and clone jobs). base: a `BaseSpeakerTTS` or an
  `EspeakSpeaker` (tts and clone jobs; with espeak, a job's `language` picks the espeak-ng voice).
  on_result(job) is called as each job ends (done or failed), once its output is written, in
  the order the jobs end; with `prefetch` it is called on the writer thread (one thread: calls
  never overlap), and `run` returns (or raises) only after every finished output is written and
  reported. `prefetch`: read the next conversion groups' audio on a host thread and write outputs
  on another while the current group computes (same outputs and report as without).
  `embedded` counts embedding computations per cache key.
  """

  def __init__(self, out_dir, converter=None, base=None, group_size: int = 8,
               on_result: Callable[[Job], None] = lambda job: None, prefetch: bool = True):
    self.out_dir = Path(out_dir)
    self.converter = converter
    self.base = base
    self.group_size = max(1, int(group_size))
    self.on_result = on_result
    self.prefetch = prefetch
    self.embedded = collections.Counter()
    self._se = {}  # cache key -> embedding [gin] or the OvjaxError it raised.
    self._voices = {}  # espeak voice -> EspeakSpeaker or the error.
    self._writer = InlineWriter()
    self._queued = set()  # Jobs whose output is computed and waits for the writer.

  # -- driver ----------------------------------------------------------------------------------

  def run(self, jobs: Iterable[Job]) -> None:
    # Two outputs of work per group may wait: enough to never stall compute, bounded memory.
    self._writer = Writer(2 * self.group_size) if self.prefetch else InlineWriter()
    try:
      self._run(jobs)
    except BaseException:
      # Interrupted (Ctrl-C) or failed: what is finished is still written and reported; the
      # first error is the one raised.
      self._writer.close(raise_error=False)
      raise
    else:
      self._writer.close()  # Drained: every output written and reported; a writer error raised.
    finally:
      self._writer = InlineWriter()

  def _run(self, jobs: Iterable[Job]) -> None:
    jobs = [j for j in jobs if j.status is None]
    for job in jobs:  # Everything cheap that needs the models, before any compute.
      try:
        self._prepare(job)
      except OvjaxError as e:
        self._failed(job, e)
    self._run_conversions([j for j in jobs if j.status is None and j.kind == "convert"])
    self._run_speech([j for j in jobs if j.status is None and j.kind in ("tts", "clone")])

  def _guarded(self, group: list[Job], work: Callable[[list[Job]], None]) -> None:
    """work(group); if its batched calls fail, each job alone, so only the bad one fails."""
    group = [j for j in group if j.status is None and j not in self._queued]
    if not group:
      return
    try:
      work(group)
    except OvjaxError as e:
      if len(group) == 1:
        self._failed(group[0], e)
      else:
        for job in group:
          self._guarded([job], work)

  def _failed(self, job: Job, error) -> None:
    job.fail(error)
    # Through the writer too: reports keep the order in which jobs end.
    self._writer.submit(lambda: self.on_result(job))

  def _finish(self, job: Job, wave, sampling_rate: int) -> None:
    self._queued.add(job)

    def task():
      write_output(job, self.out_dir, wave, sampling_rate)
      self.on_result(job)

    self._writer.submit(task)

  @staticmethod
  def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
      yield items[start:start + size]

  # -- model-dependent checks --------------------------------------------------------------------

  def _prepare(self, job: Job) -> None:
    spec = job.spec
    for key in ("target_se", "source_se"):
      if key in spec:
        self._se_from_file(spec[key])
    if job.kind == "convert":
      return
    from ovjax.api import EspeakSpeaker
    if isinstance(self.base, EspeakSpeaker):
      if spec["style"] not in (None, "default"):
        raise TextError(f"style {spec['style']!r}: an espeak base speaker has no styles")
      try:
        speaker = self._espeak(spec["language"] or self.base.voice)
      except OvjaxError as e:
        raise type(e)(f"language {spec['language']!r}: {e}") from None
      spec["voice"] = speaker.voice
      # espeak-ng would read a text of punctuation alone aloud by name: check its phonemes.
      from ovjax import text as text_frontend
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text_frontend.text_to_sequence(spec["text"], speaker.voice, frontend="espeak")
      spec["size"] = len(spec["text"])
    else:
      spec["style"] = self.base.resolve_style(spec["style"])
      spec["language"] = self.base.resolve_language(spec["language"])
      spec["pieces"] = self.base.text_to_pieces(spec["text"], spec["language"])
      spec["size"] = sum(len(p) for p in spec["pieces"])

  def _espeak(self, voice: str):
    voice = voice.strip().lower()
    if voice not in self._voices:
      from ovjax.api import EspeakSpeaker
      try:
        self._voices[voice] = EspeakSpeaker(voice)
      except OvjaxError as e:
        self._voices[voice] = e
    speaker = self._voices[voice]
    if isinstance(speaker, OvjaxError):
      raise speaker
    return speaker

  # -- tone colours ------------------------------------------------------------------------------

  def _se_from_file(self, path):
    key = ("file", str(Path(path).resolve()))
    if key not in self._se:
      try:
        self._se[key] = self.converter.tone_color(path)
      except OvjaxError as e:
        self._se[key] = e
    return self._cached(key)

  def _cached(self, key):
    value = self._se[key]
    if isinstance(value, OvjaxError):
      raise value
    return value

  def _embed(self, items: dict) -> None:
    """items: cache key -> (vad, [(name, path or waveform)]). Embeds every uncached item with
    `extract_ses` (one batched call per VAD setting); an item's own error is cached for it."""
    for vad in (True, False):
      keys = [k for k, (v, _) in items.items() if v == vad and k not in self._se]
      if not keys:
        continue
      results = self.converter.extract_ses([items[k][1] for k in keys], use_vad=vad,
                                           errors="return")
      for key, se in zip(keys, results):
        self._se[key] = se
        if not isinstance(se, OvjaxError):
          self.embedded[key] += 1

  def _target_ses(self, jobs: list[Job], loaded: dict | None = None) -> dict:
    """job -> target embedding; jobs whose target cannot be had are failed. loaded: reference
    cache key -> [(name, waveform or OvjaxError)] read ahead (others are read here)."""
    items = {}
    for job in jobs:
      if "reference" not in job.spec:
        continue
      key = reference_key(job.spec["reference"], job.spec["vad"])
      refs = (loaded or {}).get(key) or [(str(p), p) for p in job.spec["reference"]]
      error = next((r for _, r in refs if isinstance(r, OvjaxError)), None)
      if error is None:
        items[key] = (job.spec["vad"], refs)
      elif key not in self._se:  # What `extract_ses` returns for a reference it cannot read.
        self._se[key] = error
    self._embed(items)
    out = {}
    for job in jobs:
      try:
        out[job] = (self._se_from_file(job.spec["target_se"]) if "target_se" in job.spec else
                    self._cached(reference_key(job.spec["reference"], job.spec["vad"])))
      except OvjaxError as e:
        self._failed(job, e)
    return out

  # -- conversions -------------------------------------------------------------------------------

  def _run_conversions(self, jobs: list[Job]) -> None:
    claimed = set()  # Reference keys already read: each is read once per run.
    reader = Prefetch if self.prefetch else Inline
    seconds = None if self.converter is None else group_seconds(self.converter, self.group_size)
    with reader(conversion_groups(jobs, self.group_size, seconds),
                lambda group: self._load_group(group, claimed)) as groups:
      for group, loaded in groups:
        self._guarded(group, lambda jobs: self._convert_group(jobs, loaded))

  def _load_group(self, jobs: list[Job], claimed: set) -> Loaded:
    """A group's sources and not yet claimed references, read and resampled (on the prefetch
    thread: it touches no job and no cache, only `claimed`, which only it uses)."""
    def read(path):
      try:
        return self.converter.load(path)
      except OvjaxError as e:  # Fails only the jobs that need this file.
        return e

    sources, references = {}, {}
    for job in jobs:  # Each source file is read once, for its embedding and its conversion.
      path = job.spec["source"]
      if path not in sources:
        sources[path] = read(path)
      if "reference" in job.spec:
        key = reference_key(job.spec["reference"], job.spec["vad"])
        if key not in claimed:
          claimed.add(key)
          references[key] = [(str(p), read(p)) for p in job.spec["reference"]]
    return Loaded(sources, references)

  def _convert_group(self, jobs: list[Job], loaded: Loaded) -> None:
    converter = self.converter
    waves = loaded.sources
    for job in jobs:
      if isinstance(waves[job.spec["source"]], OvjaxError):
        self._failed(job, waves[job.spec["source"]])
    jobs = [j for j in jobs if j.status is None]
    targets = self._target_ses(jobs, loaded.references)
    jobs = [j for j in jobs if j.status is None]
    self._embed({source_key(j.spec["source"], j.spec["vad"]):
                 (j.spec["vad"], [(str(j.spec["source"]), waves[j.spec["source"]])])
                 for j in jobs if "source_se" not in j.spec})
    sources = {}
    for job in jobs:
      try:
        sources[job] = (self._se_from_file(job.spec["source_se"]) if "source_se" in job.spec
                        else self._cached(source_key(job.spec["source"], job.spec["vad"])))
      except OvjaxError as e:
        self._failed(job, e)
    jobs = [j for j in jobs if j.status is None]
    if not jobs:
      return
    outputs = converter.convert([waves[j.spec["source"]] for j in jobs],
                                [sources[j] for j in jobs], [targets[j] for j in jobs],
                                tau=jobs[0].spec["tau"], seed=[j.spec["seed"] for j in jobs])
    for job, wave in zip(jobs, outputs):
      self._finish(job, wave, converter.sampling_rate)

  # -- tts and clone -----------------------------------------------------------------------------

  def _run_speech(self, jobs: list[Job]) -> None:
    from ovjax.api import EspeakSpeaker
    espeak = isinstance(self.base, EspeakSpeaker)
    groups = collections.defaultdict(list)
    for job in jobs:  # One call speaks with one set of options (and converts with one tau).
      s = job.spec
      key = ((s["voice"], s["speed"]) if espeak else
             (s["style"], s["language"], s["speed"], s["noise_scale"], s["noise_scale_w"],
              s["sdp_ratio"]))
      groups[key + (job.kind, s.get("tau"))].append(job)
    for group in groups.values():
      group.sort(key=lambda j: j.spec["size"], reverse=True)
      work = self._clone_group if group[0].kind == "clone" else self._tts_group
      for chunk in self._chunks(group, self.group_size):
        self._guarded(chunk, work)

  def _speaker(self, job: Job):
    from ovjax.api import EspeakSpeaker
    return self._espeak(job.spec["voice"]) if isinstance(self.base, EspeakSpeaker) else self.base

  def _options(self, job: Job) -> dict:
    from ovjax.api import EspeakSpeaker
    s = job.spec
    if isinstance(self.base, EspeakSpeaker):
      return {"speed": s["speed"]}
    return {"speaker": s["style"], "language": s["language"], "speed": s["speed"],
            "noise_scale": s["noise_scale"], "noise_scale_w": s["noise_scale_w"],
            "sdp_ratio": s["sdp_ratio"]}

  def _tts_group(self, jobs: list[Job]) -> None:
    from ovjax.api import EspeakSpeaker
    base = self._speaker(jobs[0])
    if isinstance(base, EspeakSpeaker):
      waves = base.synthesize([j.spec["text"] for j in jobs], speed=jobs[0].spec["speed"])
    else:  # The texts were split when the jobs were read: no second pass over them.
      options = self._options(jobs[0])
      options["style"] = options.pop("speaker")
      options.pop("language")
      waves = base.synthesize_pieces([j.spec["pieces"] for j in jobs],
                                     seed=[j.spec["seed"] for j in jobs], **options)
    for job, wave in zip(jobs, waves):
      self._finish(job, wave, base.sampling_rate)

  def _clone_group(self, jobs: list[Job]) -> None:
    from ovjax.api import clone
    targets = self._target_ses(jobs)  # A bad reference fails its job before any synthesis.
    jobs = [j for j in jobs if j.status is None]
    if not jobs:
      return
    outputs = clone(self.converter, self._speaker(jobs[0]), None, [j.spec["text"] for j in jobs],
                    tau=jobs[0].spec["tau"], seed=[j.spec["seed"] for j in jobs],
                    target_se=[targets[j] for j in jobs], **self._options(jobs[0]))
    for job, wave in zip(jobs, outputs):
      self._finish(job, wave, self.converter.sampling_rate)
