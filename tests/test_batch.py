"""`ovjax batch`: a jobs file of conversions, TTS and clone jobs with bad lines among them; resume;
a run killed midway; a long input. Real models and recordings from ../shared/reference."""
import contextlib
import io
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ovjax import jobs as jobs_lib
from ovjax.api import converter as converter_module
from ovjax.audio.io import load_audio
from ovjax.cli import main
from ovjax.errors import OvjaxError

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "reference"
CONVERTER = REF / "openvoice" / "converter_v2_small"
BASE = REF / "openvoice" / "base_v1_small"
SPEAKER0 = REF / "audio" / "demo_speaker0.mp3"
EXAMPLE_REF = REF / "audio" / "example_reference.mp3"
SR = 22050
HOP = 256
MODELS = ("--converter", CONVERTER, "--base", BASE)
SUMMARY = re.compile(r"^(\d+) done, (\d+) skipped, (\d+) failed; [\d.]+ s of audio in [\d.]+ s "
                     r"\([\d.]+ x real time\); report: (.+)$")


def _run(capsys, *argv):
  """main(argv) -> (exit code, stderr)."""
  capsys.readouterr()
  code = main([str(a) for a in argv])
  return code, capsys.readouterr().err


def _summary(err):
  match = SUMMARY.match(err.splitlines()[-1])
  assert match, err
  return tuple(int(g) for g in match.groups()[:3]), Path(match.group(4))


def _read_wav(path):
  audio, sr = sf.read(str(path), dtype="float32")
  assert sr == SR and sf.info(str(path)).subtype == "FLOAT", path
  assert audio.ndim == 1 and len(audio) > SR // 4 and np.all(np.isfinite(audio)), path
  assert np.max(np.abs(audio)) > 1e-4, path
  return audio


def _report(out_dir):
  return [json.loads(line) for line in (out_dir / "report.jsonl").read_text().splitlines()]


def _write_jobs(path, jobs):
  with open(path, "w") as f:
    for job in jobs:
      f.write((job if isinstance(job, str) else json.dumps(job)) + "\n")
  return path


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
  monkeypatch.delenv("OVJAX_DEBUG", raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Golden source and embeddings, 2 s slices of real speech and a 40 s recording, as WAVs."""
  d = tmp_path_factory.mktemp("batch_data")
  golden = dict(np.load(CONVERTER / "golden.npz"))
  sf.write(str(d / "src.wav"), golden["src_audio"].astype(np.float32), SR, subtype="FLOAT")
  for key in ("src_se", "tgt_se"):
    np.save(d / f"{key}.npy", golden[key].astype(np.float32))  # [1, gin, 1], as the reference.
  speech = np.concatenate([load_audio(SPEAKER0, SR), load_audio(EXAMPLE_REF, SR)])
  # Two seconds each (one length bucket), from different places: distinct sources.
  for i in range(12):
    start = int((1.0 + 3.5 * i) * SR)
    sf.write(str(d / f"slice{i}.wav"), speech[start:start + 2 * SR], SR, subtype="FLOAT")
  sf.write(str(d / "long.wav"), speech[:40 * SR], SR, subtype="FLOAT")  # Like demo_speaker1.
  return {"dir": d, "golden": golden}


# -- one run: good and bad jobs ----------------------------------------------------------------


def _mixed_jobs(d):
  """(jobs, {id: expected status or error text}); relative paths are the jobs file's folder's."""
  ref = str(EXAMPLE_REF)
  jobs = [
      {"id": "conv_a", "source": "src.wav", "reference": ref},
      {"id": "tts_a", "text": "Hello world, this is a test."},
      {"id": "conv_b", "source": "slice0.wav", "reference": ref, "tau": 0.3},
      {"id": "golden", "source": "src.wav", "source_se": "src_se.npy", "target_se": "tgt_se.npy",
       "tau": 0, "out": "sub/golden.wav"},
      {"id": "conv_c", "source": str(d / "slice1.wav"), "reference": [ref], "vad": True},
      {"id": "tts_b", "text": "The quick brown fox. It jumps!", "style": "cheerful",
       "speed": 1.2},
      {"id": "clone", "text": "Cloning a voice takes seconds.", "reference": ref, "tau": 0.5},
      {"id": "missing", "source": "nope.wav", "reference": ref},
      '{"id": "bad_json", "source": ',
      {"id": "unknown_key", "source": "src.wav", "reference": ref, "temperature": 0.3},
      {"id": "unspeakable", "text": "... !!"},
      {"id": "bad_style", "text": "Hello there.", "style": "singing"},
      {"id": "duplicate", "source": "slice2.wav", "target_se": "tgt_se.npy", "out": "conv_a.wav"},
      {"id": "absolute", "source": "src.wav", "target_se": "tgt_se.npy", "out": "/tmp/x.wav"},
      {"id": "no_target", "source": "src.wav"},
      {"id": "both_targets", "source": "src.wav", "reference": ref, "target_se": "tgt_se.npy"},
  ]
  expected = {
      "conv_a": "done", "tts_a": "done", "conv_b": "done", "golden": "done", "conv_c": "done",
      "tts_b": "done", "clone": "done",
      "missing": "audio file not found", "bad_json": "bad JSON",
      "unknown_key": "unknown key 'temperature'", "unspeakable": "nothing speakable",
      "bad_style": "unknown style 'singing'", "duplicate": "also the output of line 1",
      "absolute": "must be relative", "no_target": "needs 'reference' or 'target_se'",
      "both_targets": "not both",
  }
  return jobs, expected


@pytest.fixture(scope="module")
def first_run(data):
  """The mixed jobs file run once, counting reference decodes and keeping the runner."""
  d = data["dir"]
  jobs, expected = _mixed_jobs(d)
  jobs_file = _write_jobs(d / "jobs.jsonl", jobs)
  out_dir = d / "out"
  decodes, runners = [], []
  real_load, real_init = converter_module.load_audio, jobs_lib.JobRunner.__init__

  def counting_load(path, *args, **kwargs):
    decodes.append(Path(path).resolve())
    return real_load(path, *args, **kwargs)

  def keeping_init(self, *args, **kwargs):
    runners.append(self)
    real_init(self, *args, **kwargs)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(converter_module, "load_audio", counting_load)
    mp.setattr(jobs_lib.JobRunner, "__init__", keeping_init)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      code = main(["batch", str(jobs_file), "--out-dir", str(out_dir),
                   *map(str, MODELS)])
  assert runners, err.getvalue()  # No runner: `batch` failed early (is it registered in cli.py?)
  return dict(code=code, err=err.getvalue(), out_dir=out_dir, jobs_file=jobs_file,
              expected=expected, decodes=decodes, runner=runners[0])


def test_mixed_jobs(first_run, data):
  run, out_dir, expected = first_run, first_run["out_dir"], first_run["expected"]
  assert run["code"] == 1, run["err"]
  (done, skipped, failed), report_path = _summary(run["err"])
  assert (done, skipped, failed) == (7, 0, 9) and report_path == out_dir / "report.jsonl"
  assert "Traceback" not in run["err"]

  report = _report(out_dir)
  assert [e["line"] for e in report] == list(range(1, 17))  # Rewritten in line order.
  by_line = {e["line"]: e for e in report}
  for line, job_id in enumerate(expected, start=1):
    entry, want = by_line[line], expected[job_id]
    if want == "done":
      assert entry["status"] == "done" and entry["error"] is None, entry
      assert entry["id"] == job_id and entry["seconds_audio"] > 0.5
      audio = _read_wav(out_dir / entry["out"])
      assert abs(len(audio) / SR - entry["seconds_audio"]) < 1e-3
    else:
      assert entry["status"] == "failed" and want in entry["error"], entry
      assert "\n" not in entry["error"] and entry["seconds_audio"] is None
  assert by_line[4]["out"] == "sub/golden.wav" and by_line[9]["out"] is None
  assert by_line[8]["out"] == "missing.wav"
  # Every failure also has its line on stderr (tqdm clears its bar with \r before writing it).
  for line, job_id in enumerate(expected, start=1):
    if expected[job_id] != "done":
      assert re.search(rf"(^|\r)line {line}\b.*{re.escape(expected[job_id])}", run["err"],
                       re.M), run["err"]

  # Parity: the tau-0 conversion of the golden source with the golden embeddings.
  want = data["golden"]["vc_audio"].reshape(-1)
  got = _read_wav(out_dir / "sub" / "golden.wav")
  assert got.shape == want.shape and np.max(np.abs(got - want)) < 1e-4

  # One reference, used by four jobs (as a path and as a one-item list; conversions and a clone):
  # decoded once, embedded once.
  assert run["decodes"].count(EXAMPLE_REF.resolve()) == 1
  assert run["runner"].embedded[jobs_lib.reference_key([EXAMPLE_REF], True)] == 1
  assert not [p for p in out_dir.rglob("*.tmp")]


def test_resume_redoes_only_outputs_it_cannot_vouch_for(first_run, capsys, tmp_path):
  """Skipped only if the report recorded it and the file still has that size and SHA-256: a
  missing, truncated or foreign output (or a symlink planted at its name) is redone."""
  out_dir = first_run["out_dir"]
  (out_dir / "conv_b.wav").unlink()
  with open(out_dir / "tts_a.wav", "r+b") as f:  # Truncated behind ovjax's back.
    f.truncate(f.seek(0, 2) // 2)
  (out_dir / "tts_b.wav").write_bytes((out_dir / "conv_a.wav").read_bytes())  # Someone else's.
  outside = tmp_path / "outside.wav"
  outside_bytes = (out_dir / "conv_c.wav").read_bytes()
  outside.write_bytes(outside_bytes)
  (out_dir / "conv_c.wav").unlink()
  (out_dir / "conv_c.wav").symlink_to(outside)  # Same bytes, but not the file ovjax wrote.
  kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out_dir.rglob("*.wav")
          if p.stem in ("conv_a", "golden", "clone")}
  assert len(kept) == 3
  code, err = _run(capsys, "batch", first_run["jobs_file"], "--out-dir", out_dir, *MODELS)
  assert code == 1, err
  assert _summary(err)[0] == (4, 3, 9)
  report = {e["id"]: e for e in _report(out_dir) if e["id"] is not None}
  for job_id in ("conv_b", "tts_a", "tts_b", "conv_c"):
    assert report[job_id]["status"] == "done"
    path = out_dir / report[job_id]["out"]
    assert not path.is_symlink()
    assert report[job_id]["bytes"] == path.stat().st_size
    assert report[job_id]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
  for job_id in ("conv_a", "golden", "clone"):
    assert report[job_id]["status"] == "skipped" and len(report[job_id]["sha256"]) == 64
  assert [job_id for job_id, e in report.items() if e["status"] == "failed"] == [
      j for j, want in first_run["expected"].items() if want != "done" and j != "bad_json"]
  for path, (mtime, data) in kept.items():  # Never rewritten.
    assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data
  assert outside.read_bytes() == outside_bytes  # The link was replaced, its target untouched.
  for name in ("conv_b", "tts_a", "tts_b", "conv_c"):
    _read_wav(out_dir / f"{name}.wav")

  # A third run skips everything it wrote, the redone ones included.
  code, err = _run(capsys, "batch", first_run["jobs_file"], "--out-dir", out_dir, *MODELS)
  assert _summary(err)[0] == (0, 7, 9)


def test_failing_group_falls_back_to_one_job_at_a_time(data, capsys, monkeypatch, tmp_path):
  """A batched call that fails takes down only the job that makes it fail."""
  d = data["dir"]
  poison = tmp_path / "poison.wav"  # 1.5 s: the same length bucket as the 2 s slices.
  sf.write(str(poison), sf.read(str(d / "slice3.wav"), dtype="float32")[0][:int(1.5 * SR)], SR,
           subtype="FLOAT")
  real_convert = converter_module.ToneColorConverter.convert

  def convert(self, sources, *args, **kwargs):
    if any(len(w) == int(1.5 * SR) for w in sources):
      raise OvjaxError("poisoned batch")
    return real_convert(self, sources, *args, **kwargs)

  monkeypatch.setattr(converter_module.ToneColorConverter, "convert", convert)
  se = {"source_se": str(d / "src_se.npy"), "target_se": str(d / "tgt_se.npy")}
  jobs = _write_jobs(tmp_path / "jobs.jsonl", [
      {"id": "a", "source": str(d / "slice4.wav"), **se},
      {"id": "p", "source": str(poison), **se},
      {"id": "b", "source": str(d / "slice5.wav"), **se}])
  code, err = _run(capsys, "batch", jobs, "--out-dir", tmp_path / "out", "--converter",
                   CONVERTER)
  assert code == 1 and _summary(err)[0] == (2, 0, 1), err
  statuses = {e["id"]: (e["status"], e["error"]) for e in _report(tmp_path / "out")}
  assert statuses == {"a": ("done", None), "b": ("done", None),
                      "p": ("failed", "poisoned batch")}


def test_espeak_base(data, capsys, tmp_path):
  """With `--base espeak` a tts job is espeak-ng's speech; a job's language picks the voice."""
  d = data["dir"]
  jobs = _write_jobs(tmp_path / "jobs.jsonl", [
      {"id": "en", "text": "Hello from espeak."},
      {"id": "fr", "text": "Bonjour tout le monde.", "language": "French",
       "target_se": str(d / "tgt_se.npy"), "tau": 0},
      {"id": "klingon", "text": "Hello.", "language": "Klingon"},
      {"id": "styled", "text": "Hello.", "style": "sad"},
      {"id": "dots", "text": "... !!"}])
  code, err = _run(capsys, "batch", jobs, "--out-dir", tmp_path / "out", "--converter",
                   CONVERTER, "--base", "espeak")
  assert code == 1 and "base speaker: espeak-ng voice en-us" in err, err
  report = {e["id"]: e for e in _report(tmp_path / "out")}
  assert report["en"]["status"] == report["fr"]["status"] == "done"
  for job_id, message in (("klingon", "language 'Klingon': espeak-ng has no voice"),
                          ("styled", "no styles"), ("dots", "nothing speakable")):
    assert report[job_id]["status"] == "failed" and message in report[job_id]["error"]
  _read_wav(tmp_path / "out" / "en.wav")
  _read_wav(tmp_path / "out" / "fr.wav")


# -- bad invocations -------------------------------------------------------------------------------


def test_unusable_jobs_file_or_out_dir(data, capsys, tmp_path):
  empty = tmp_path / "empty.jsonl"
  empty.write_text("\n  \n")
  a_file = tmp_path / "file"
  a_file.write_text("x")
  jobs = _write_jobs(tmp_path / "jobs.jsonl", [{"source": "x.wav", "target_se": "y.npy"}])
  for argv, message in (([tmp_path / "nope.jsonl", "--out-dir", tmp_path / "o"], "no such"),
                        ([empty, "--out-dir", tmp_path / "o"], "no jobs"),
                        ([jobs, "--out-dir", a_file], "not a directory")):
    code, err = _run(capsys, "batch", *argv)
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("ovjax: error:"), err
    assert message in lines[0], err
  assert not (tmp_path / "o").exists()


def test_parse_without_models(data, tmp_path):
  """Parsing alone (no JAX needed): a job needing a model the run lacks fails by itself."""
  jobs = _write_jobs(tmp_path / "jobs.jsonl", [
      {"source": str(data["dir"] / "src.wav"), "target_se": str(data["dir"] / "tgt_se.npy")},
      {"text": "Hello.", "id": "hi"},
      {"text": "Hello.", "id": 7, "seed": True},
      {"text": "Hello.", "id": "dots", "out": "a/../../b.wav"},
      {"text": "Hello.", "id": "mp3", "out": "b.mp3"},
  ])
  parsed = jobs_lib.parse_jobs(jobs, tmp_path / "out", has_converter=False, has_base=True)
  errors = [j.error for j in parsed]
  assert "needs --converter" in errors[0] and errors[1] is None
  assert "'seed' must be an integer" in errors[2] and parsed[2].out == "7.wav"
  assert "no '..'" in errors[3] and ".wav file" in errors[4]


# -- killed midway, then resumed ------------------------------------------------------------------


def test_killed_run_leaves_whole_files_and_resumes(data, capsys, tmp_path):
  d = data["dir"]
  jobs = _write_jobs(tmp_path / "jobs.jsonl", [
      {"id": f"k{i:02d}", "source": str(d / f"slice{i}.wav"), "target_se": str(d / "tgt_se.npy")}
      for i in range(12)])
  out_dir = tmp_path / "out"
  env = {k: v for k, v in os.environ.items() if k != "OVJAX_DEBUG"}
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  # One job per group: outputs appear one by one, so the kill lands between (or in) writes.
  proc = subprocess.Popen(
      [sys.executable, "-m", "ovjax.cli", "batch", str(jobs), "--out-dir", str(out_dir),
       "--converter", str(CONVERTER), "--max-batch", "1"],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
  try:
    deadline = time.monotonic() + 240
    while not list(out_dir.glob("k*.wav")):
      assert proc.poll() is None, proc.stderr.read().decode()
      assert time.monotonic() < deadline, "no output within 240 s"
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.kill()
    proc.wait()
    proc.stderr.close()
  assert proc.returncode == -signal.SIGKILL

  present = sorted(out_dir.glob("k*.wav"))
  assert 1 <= len(present) < 12, "the run ended before it could be killed"
  for path in present:  # Whole files only: atomic writes.
    source = sf.read(str(d / f"slice{int(path.stem[1:])}.wav"))[0]
    assert len(_read_wav(path)) == len(source) // HOP * HOP
  recorded = [json.loads(line) for line in (out_dir / "report.jsonl").read_text().splitlines()]
  assert all(e["status"] == "done" for e in recorded)  # Partial, but whole lines.
  # A kill between an output's rename and its report line leaves one output unrecorded: redone.
  assert len(present) - 1 <= len(recorded) <= len(present)

  code, err = _run(capsys, "batch", jobs, "--out-dir", out_dir, "--converter", CONVERTER)
  assert code == 0, err
  assert _summary(err)[0] == (12 - len(recorded), len(recorded), 0)
  assert sorted(p.name for p in out_dir.glob("*.wav")) == [f"k{i:02d}.wav" for i in range(12)]
  for path in out_dir.glob("*.wav"):
    _read_wav(path)
  assert not [p for p in out_dir.iterdir() if p.name.endswith(".tmp")]  # Stale temps removed.
  assert len(_report(out_dir)) == 12


# -- a long input --------------------------------------------------------------------------------


def test_long_source_is_converted_in_pieces(data, capsys, tmp_path):
  d = data["dir"]
  jobs = _write_jobs(tmp_path / "jobs.jsonl", [
      {"id": "long", "source": str(d / "long.wav"), "target_se": str(d / "tgt_se.npy")}])
  code, err = _run(capsys, "-q", "batch", jobs, "--out-dir", tmp_path / "out", "--converter",
                   CONVERTER)
  assert code == 0 and err == "", err  # -q: nothing but errors.
  audio = _read_wav(tmp_path / "out" / "long.wav")
  assert len(audio) == 40 * SR // HOP * HOP
  written = (tmp_path / "out" / "long.wav").read_bytes()
  assert _report(tmp_path / "out") == [{"line": 1, "id": "long", "out": "long.wav",
                                        "status": "done", "error": None,
                                        "seconds_audio": round(len(audio) / SR, 3),
                                        "bytes": len(written),
                                        "sha256": hashlib.sha256(written).hexdigest(),
                                        "source": str(d / "long.wav")}]


def test_bfloat16_batch_matches_float32(data, capsys, tmp_path):
  """`ovjax batch --dtype bfloat16`: the same jobs (tau 0.3 and the TTS's prior noise: the same
  noise, drawn in float32 and rounded; the TTS's durations stay float32), outputs of the same
  length at >= 30 dB SNR against float32's, for conversion and TTS alike."""
  d = data["dir"]
  jobs = _write_jobs(tmp_path / "jobs.jsonl", [
      {"id": "long", "source": str(d / "long.wav"), "target_se": str(d / "tgt_se.npy")},
      {"id": "tts", "text": "The quick brown fox jumps over the lazy dog."}])
  outs = {}
  for dtype in ("float32", "bfloat16"):
    code, err = _run(capsys, "-q", "batch", jobs, "--out-dir", tmp_path / dtype, *MODELS,
                     "--dtype", dtype)
    assert code == 0 and err == "", err
    outs[dtype] = [_read_wav(tmp_path / dtype / f"{name}.wav") for name in ("long", "tts")]
  for ref, out in zip(outs["float32"], outs["bfloat16"]):
    assert len(out) == len(ref)
    assert 10 * np.log10(np.sum(ref**2) / np.sum((out - ref)**2)) >= 30
