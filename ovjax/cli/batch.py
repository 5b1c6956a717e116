"""`ovjax batch`: run a JSONL file of conversion, TTS and clone jobs, batched, with resume.

The job logic (parsing, grouping, caching) lives in `ovjax.jobs`; this is the command around it:
up-front checks, model loading, the progress bar, the report and the summary line.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ovjax.cli import common
from ovjax.cli import clone as clone_command
from ovjax.errors import OvjaxError


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "batch", parents=list(parents),
      help="run a JSONL file of convert / tts / clone jobs (batched, resumable)",
      description="Run every job of JOBS.jsonl (one JSON object per line) into --out-dir. "
                  "A conversion has 'source' and 'reference' (a path or a list) or "
                  "'target_se', optionally 'source_se', 'tau', 'vad'; a tts job has 'text' "
                  "and optionally 'style', 'language', 'speed', 'noise_scale', "
                  "'noise_scale_w', 'sdp_ratio'; a clone job is a tts job with 'reference' or "
                  "'target_se' (and 'tau', 'vad'). Any job may give 'id', 'seed' and 'out' "
                  "(a .wav name inside --out-dir; default <id or line number>.wav). Relative "
                  "paths are relative to the jobs file's folder. Re-running resumes: a job is "
                  "skipped when the previous report.jsonl records its output as written and "
                  "the file still has the recorded size and SHA-256 (anything else there is "
                  "redone); a bad job fails alone. Every job's outcome "
                  "goes to OUT_DIR/report.jsonl.",
      epilog="Exit codes: 0 every job done or skipped, 1 a job failed (or the jobs file / "
             "--out-dir is unusable).")
  p.add_argument("jobs", metavar="JOBS.jsonl", help="the jobs, one JSON object per line")
  p.add_argument("--out-dir", required=True, metavar="DIR",
                 help="folder for the outputs and report.jsonl (created if missing)")
  p.add_argument("--converter", metavar="DIR",
                 help="converter folder (official or imported); needed by conversion and "
                      "clone jobs")
  p.add_argument("--base", metavar="DIR|espeak[:VOICE]",
                 help="base speaker TTS folder, or `espeak` / `espeak:VOICE` for espeak-ng "
                      "(then a job's 'language' picks the voice); needed by tts and clone jobs")
  p.add_argument("--max-batch", type=_positive_int, default=8, metavar="N",
                 help="jobs per group and items per device batch (default: 8)")
  p.add_argument("--seed", type=common.seed_type, default=0, metavar="N",
                 help="seed of the sampling noise for jobs without their own (default: 0)")
  p.add_argument("--no-vad", action="store_true",
                 help="embed references and sources whole by default (a job's 'vad' wins)")
  common.add_dtype_arg(p)
  p.set_defaults(run=run)


def _check_out_dir(path) -> Path:
  path = Path(path)
  if path.exists() and not path.is_dir():
    raise OvjaxError(f"--out-dir {path}: exists and is not a directory")
  common.check_creatable_parent(path / "report.jsonl", "--out-dir")
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise OvjaxError(f"--out-dir {path}: cannot create ({e.strerror or type(e).__name__})")
  if not os.access(path, os.W_OK | os.X_OK):
    raise OvjaxError(f"--out-dir {path}: cannot write there (permission denied)")
  return path


def _check_folder(path, flag: str) -> None:
  if path is not None and not Path(path).is_dir():
    raise OvjaxError(f"{flag} {path}: no such folder")


def run(args) -> int:
  progress = common.Progress(args)
  from ovjax import jobs as jobs_lib  # No JAX: parsing is instant.

  # Cheap checks first: a typo should not cost a model load.
  jobs_lib.read_lines(args.jobs)  # Missing or empty jobs file: one line, exit 1.
  _check_folder(args.converter, "--converter")
  voice = None if args.base is None else clone_command.espeak_voice(args.base)
  if voice is None:
    _check_folder(args.base, "--base")
  out_dir = _check_out_dir(args.out_dir)

  jobs = jobs_lib.parse_jobs(args.jobs, out_dir, has_converter=args.converter is not None,
                             has_base=args.base is not None, seed=args.seed,
                             vad=not args.no_vad)
  jobs_lib.remove_stale_temporaries(out_dir, jobs)  # Left by a killed run.
  report = jobs_lib.Report(out_dir / jobs_lib.REPORT_NAME)
  totals = {"done": 0, "skipped": 0, "failed": 0, "audio": 0.0}
  bar = None

  def record(job) -> None:
    report.add(job)
    totals[job.status] += 1
    totals["audio"] += job.seconds_audio or 0.0
    if job.status == "failed" and not progress.quiet:
      _write(bar, f"{job.label}: {job.error}")
    if bar is not None:
      bar.update(1)
      bar.set_postfix_str(_rate(totals, progress.elapsed), refresh=False)

  for job in jobs:
    if job.status is not None:
      record(job)
  pending = [j for j in jobs if j.status is None]

  if pending:
    converter = base = None
    if any(j.kind in ("convert", "clone") for j in pending):
      converter = _load(lambda: common.load_converter_folder(
          args.converter, progress, "--converter", dtype=args.dtype), args.max_batch)
    if any(j.kind in ("tts", "clone") for j in pending):
      base = _load_base(args, voice, progress)
    from tqdm import tqdm
    # On a terminal a live bar; in a log, a line now and then rather than a flood.
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), unit="job", file=sys.stderr,
               disable=progress.quiet, mininterval=0.5 if sys.stderr.isatty() else 30,
               dynamic_ncols=True, leave=True)
    try:
      jobs_lib.JobRunner(out_dir, converter, base, group_size=args.max_batch,
                         on_result=record).run(pending)
    finally:
      bar.close()

  report.close(jobs)
  summary = (f"{totals['done']} done, {totals['skipped']} skipped, {totals['failed']} failed; "
             f"{totals['audio']:.1f} s of audio in {progress.elapsed:.1f} s "
             f"({totals['audio'] / max(progress.elapsed, 1e-9):.1f} x real time); "
             f"report: {report.path}")
  if totals["failed"] or not progress.quiet:  # A failed run explains itself even with -q.
    print(summary, file=sys.stderr, flush=True)
  return 1 if totals["failed"] else 0


def _rate(totals, elapsed: float) -> str:
  return f"audio/s={totals['audio'] / max(elapsed, 1e-9):.1f}x"


def _write(bar, message: str) -> None:
  if bar is None:
    print(message, file=sys.stderr, flush=True)
  else:
    bar.write(message, file=sys.stderr)


def _load(loader, max_batch: int):
  model = loader()
  model.max_batch = max(max_batch, model.n_devices)  # As the constructor's max_batch would.
  return model


def _load_base(args, voice, progress):
  if voice is not None:
    from ovjax.api import EspeakSpeaker  # Deferred: imports JAX.
    try:
      base = EspeakSpeaker(voice)  # Checks the voice: TextError if espeak-ng has none.
    except OvjaxError as e:
      raise type(e)(f"--base {args.base}: {e}") from None
    progress(f"base speaker: espeak-ng voice {base.voice}")
    return base
  return _load(lambda: common.load_base_tts(args.base, progress, "--base", dtype=args.dtype),
               args.max_batch)
