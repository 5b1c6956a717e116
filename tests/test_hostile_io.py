"""Hostile files and paths: outputs that escape through symlinks, symlinks at output names, FIFOs
as inputs and lying audio headers. Each must fail fast with one line, or be made harmless."""
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ovjax import jobs as jobs_lib
from ovjax.audio import io as audio_io
from ovjax.audio.io import load_audio, write_wav
from ovjax.cli import common, main
from ovjax.errors import AudioError, CheckpointError, OvjaxError
from ovjax.fileio import atomic_output, require_regular_file

from test_batch import CONVERTER, SR, _report, _summary, _write_jobs  # noqa: E402 - beside this file.

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
  monkeypatch.delenv("OVJAX_DEBUG", raising=False)


@pytest.fixture
def fifo(tmp_path):
  path = tmp_path / "pipe.wav"
  os.mkfifo(path)
  return path


def _tone(path, seconds=1.0, sr=16000):
  t = np.arange(int(seconds * sr)) / sr
  sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr,
           subtype="PCM_16")
  return path


# -- batch: outputs stay inside the real --out-dir ---------------------------------------------


def test_batch_output_escape_and_report_symlink(tmp_path, capsys):
  """One run: a job writing through a symlinked folder leading outside fails alone; a job through
  a symlink that stays inside and a plain job are done; report.jsonl, a symlink to a file
  outside, is replaced, its target untouched."""
  golden = dict(np.load(CONVERTER / "golden.npz"))
  d = tmp_path / "data"
  d.mkdir()
  sf.write(str(d / "src.wav"), golden["src_audio"].astype(np.float32), SR, subtype="FLOAT")
  for key in ("src_se", "tgt_se"):
    np.save(d / f"{key}.npy", golden[key].astype(np.float32))
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  (elsewhere / ".x.wav.0123456789ab.tmp").write_text("not ours")  # Must survive the cleanup.
  outside_report = tmp_path / "precious.txt"
  outside_report.write_text("keep me\n")
  out_dir = tmp_path / "out"
  (out_dir / "sub").mkdir(parents=True)
  (out_dir / "link").symlink_to(elsewhere)
  (out_dir / "inner").symlink_to(out_dir / "sub")
  (out_dir / "report.jsonl").symlink_to(outside_report)

  se = {"source": "src.wav", "source_se": "src_se.npy", "target_se": "tgt_se.npy", "tau": 0}
  jobs = _write_jobs(d / "jobs.jsonl", [
      {"id": "escape", **se, "out": "link/x.wav"},
      {"id": "normal", **se},
      {"id": "inner", **se, "out": "inner/y.wav"},
      {"id": "deep", **se, "out": "link/new/z.wav"}])
  capsys.readouterr()
  code = main(["batch", str(jobs), "--out-dir", str(out_dir), "--converter", str(CONVERTER)])
  err = capsys.readouterr().err
  assert code == 1 and "Traceback" not in err, err
  assert _summary(err)[0] == (2, 0, 2), err

  assert outside_report.read_text() == "keep me\n"  # Never written through the link.
  assert not (out_dir / "report.jsonl").is_symlink()
  report = {e["id"]: e for e in _report(out_dir)}
  assert report["normal"]["status"] == report["inner"]["status"] == "done", report
  for job_id in ("escape", "deep"):
    entry = report[job_id]
    assert entry["status"] == "failed" and "outside the output folder" in entry["error"], entry
    assert "\n" not in entry["error"]
  assert sorted(p.name for p in elsewhere.iterdir()) == [".x.wav.0123456789ab.tmp"]
  assert not (elsewhere / "new").exists()  # Not even a folder made out there.
  assert sf.info(str(out_dir / "normal.wav")).samplerate == SR
  assert sf.info(str(out_dir / "sub" / "y.wav")).samplerate == SR


def test_output_path_and_stale_temporaries_confined(tmp_path):
  out_dir = tmp_path / "out"
  out_dir.mkdir()
  (tmp_path / "elsewhere").mkdir()
  (out_dir / "link").symlink_to(tmp_path / "elsewhere")
  with pytest.raises(jobs_lib.JobError, match="outside the output folder"):
    jobs_lib.output_path(out_dir, "link/x.wav")
  assert jobs_lib.output_path(out_dir, "a/b.wav") == out_dir.resolve() / "a" / "b.wav"
  stale = tmp_path / "elsewhere" / ".x.wav.0123456789ab.tmp"
  stale.write_text("x")
  job = jobs_lib.Job(1, out="link/x.wav")
  assert jobs_lib.remove_stale_temporaries(out_dir, [job]) == 0 and stale.exists()


# -- single commands: a symlink at --out is replaced, not followed -----------------------------


def test_write_wav_replaces_symlink_not_its_target(tmp_path):
  target = tmp_path / "target.wav"
  target.write_bytes(b"precious")
  out = tmp_path / "out.wav"
  out.symlink_to(target)
  assert common.check_output_file(out, ".wav") == out
  write_wav(out, np.full(800, 0.1, np.float32), 16000)
  assert not out.is_symlink() and sf.info(str(out)).frames == 800
  assert target.read_bytes() == b"precious"

  # Even a link to a folder: the link goes, the folder stays as it was.
  folder = tmp_path / "folder"
  folder.mkdir()
  (tmp_path / "to_folder.wav").symlink_to(folder)
  common.check_output_file(tmp_path / "to_folder.wav", ".wav")
  write_wav(tmp_path / "to_folder.wav", np.full(800, 0.1, np.float32), 16000)
  assert (tmp_path / "to_folder.wav").is_file() and list(folder.iterdir()) == []

  # A folder output over a link: the link is replaced, its target folder left alone.
  (tmp_path / "exported").symlink_to(folder)
  with atomic_output(tmp_path / "exported", directory=True) as tmp:
    (tmp / "config.json").write_text("{}")
  assert not (tmp_path / "exported").is_symlink() and list(folder.iterdir()) == []


# -- inputs must be regular files ---------------------------------------------------------------


def test_fifo_refused_by_load_audio(fifo):
  start = time.monotonic()
  with pytest.raises(AudioError) as excinfo:
    load_audio(fifo, 22050)
  message = str(excinfo.value)
  assert "is a FIFO (named pipe), not a regular file" in message and fifo.name in message
  assert "\n" not in message and time.monotonic() - start < 5


def test_fifo_refused_by_cli_checks(fifo, tmp_path):
  with pytest.raises(AudioError, match="FIFO"):
    common.check_audio_inputs([fifo])
  with pytest.raises(CheckpointError, match="FIFO"):
    common.check_tone_color_inputs([fifo])

  class Args:
    text = None
    text_file = str(fifo)

  with pytest.raises(OvjaxError, match="--text-file .*: is a FIFO"):
    common.read_text(Args)
  with pytest.raises(OvjaxError, match="is a directory, not a regular file"):
    require_regular_file(tmp_path)


def test_fifo_extract_se_fails_fast(fifo, tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "OVJAX_DEBUG"}
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  proc = subprocess.run(
      [sys.executable, "-m", "ovjax.cli", "extract-se", "--checkpoint", str(CONVERTER), str(fifo),
       "--out", str(tmp_path / "x.npy")],
      capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
  lines = proc.stderr.splitlines()
  assert proc.returncode == 1 and len(lines) == 1, proc.stderr
  assert "FIFO (named pipe)" in lines[0] and not (tmp_path / "x.npy").exists()


def test_fifo_as_a_batch_source_fails_its_job_alone(fifo, tmp_path):
  """Parsing needs no model: the FIFO job fails at once (never blocks), the other stays pending."""
  good = tmp_path / "good.wav"
  sf.write(good, np.full(SR, 0.1, np.float32), SR)
  jobs_file = tmp_path / "jobs.jsonl"
  jobs_file.write_text(f'{{"source": "{fifo}", "target_se": "{good}"}}\n'
                       f'{{"source": "{good}", "reference": "{good}"}}\n')
  bad, ok = jobs_lib.parse_jobs(jobs_file, tmp_path / "out", has_converter=True, has_base=False)
  assert bad.status == "failed" and "FIFO" in bad.error and "\n" not in bad.error
  assert ok.status is None


# -- lying headers -------------------------------------------------------------------------------


def test_header_rate_of_1_hz_refused(tmp_path):
  path = _tone(tmp_path / "ok.wav")
  data = bytearray(path.read_bytes())
  fmt = data.find(b"fmt ")
  assert struct.unpack_from("<I", data, fmt + 12) == (16000,)
  struct.pack_into("<II", data, fmt + 12, 1, 2)  # Sample rate 1 Hz, byte rate 2 (16-bit mono).
  bad = tmp_path / "one_hz.wav"
  bad.write_bytes(bytes(data))
  with pytest.raises(AudioError) as excinfo:
    load_audio(bad, 22050)
  message = str(excinfo.value)
  assert "sample rate 1 Hz" in message and bad.name in message and "\n" not in message


def test_header_duration_over_the_bound_refused(tmp_path, monkeypatch):
  path = _tone(tmp_path / "two_seconds.wav", seconds=2.0)
  monkeypatch.setattr(audio_io, "MAX_SECONDS", 1)  # A 4-hour file would be gigabytes.
  monkeypatch.setattr(audio_io.sf.SoundFile, "read", None)  # Refused before decoding.
  with pytest.raises(AudioError, match="hour limit"):
    load_audio(path, 16000)


# -- clean messages: what a file is, no decoder chatter, warnings as ovjax lines -------------------

REAL_MP3 = ROOT.parent / "shared" / "reference" / "audio" / "example_reference.mp3"


def _cli(args, cwd):
  env = {k: v for k, v in os.environ.items() if k != "OVJAX_DEBUG"}
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  return subprocess.run([sys.executable, "-m", "ovjax.cli", *map(str, args)], capture_output=True,
                        text=True, timeout=120, env=env, cwd=cwd)


def test_damaged_mp3_is_one_line_without_decoder_chatter(tmp_path):
  """Random bytes in the middle of a real MP3 make libmpg123 print resync notes on fd 2 (outside
  Python's sys.stderr): the run prints the one ovjax line and nothing else."""
  data = REAL_MP3.read_bytes()
  garbled = tmp_path / "garbled.mp3"
  garbled.write_bytes(data[:2000] + np.random.default_rng(0).bytes(5000) + data[7000:])
  text_as_mp3 = tmp_path / "notes.mp3"
  text_as_mp3.write_text("a shopping list, not a recording\n")
  for path, says in ((garbled, "an MP3 file, but its data is damaged or truncated"),
                     (text_as_mp3, "it is plain text, not audio")):
    proc = _cli(["-q", "extract-se", "--checkpoint", CONVERTER, path, "--out",
                 tmp_path / "x.npy"], tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("ovjax: error:") and says in lines[0], lines[0]
    assert "possibly a pipe" not in lines[0] and "Note:" not in proc.stderr
    assert not (tmp_path / "x.npy").exists()


def test_captured_stderr_that_is_not_chatter_is_passed_on(capfd):
  with audio_io._decoder_chatter_silenced():
    os.write(2, b"Note: Trying to resync...\n[src/libmpg123/parse.c:wetwork():1349] error: x\n")
    os.write(2, b"progress 50%\n")
  assert capfd.readouterr().err == "progress 50%\n"


@pytest.mark.parametrize("content, kind", [
    (b"", "an empty file"), (b"hello\n", "plain text"), (b'{"a": 1}', "JSON text"),
    (b"PK\x03\x04rest", "a ZIP archive"), (b"\x93NUMPY\x01\x00", "a NumPy .npy array"),
    (b"RIFF\x00\x00\x00\x00WAVE", "a RIFF/WAV file"), (bytes(range(256)), "binary data")])
def test_describe_content(tmp_path, content, kind):
  from ovjax.fileio import describe_content
  (tmp_path / "f").write_bytes(content)
  assert describe_content(tmp_path / "f") == kind


def test_file_type_errors_say_what_the_file_is(tmp_path):
  from ovjax.checkpoint.store import load_tone_color
  from ovjax.checkpoint.torch_pickle import load_state_dict
  (tmp_path / "se.npy").write_text("0.1 0.2 0.3\n")
  with pytest.raises(CheckpointError, match=r"not a \.npy array \(it is plain text"):
    load_tone_color(tmp_path / "se.npy")
  (tmp_path / "checkpoint.pth").write_text('{"weights": []}')
  with pytest.raises(CheckpointError, match="it is JSON text, not a zip archive"):
    load_state_dict(tmp_path / "checkpoint.pth")
  (tmp_path / "exp.json").write_text('{"steps": 3}')
  code = main(["train", "converter", "--config", str(tmp_path / "exp.json"), "--workdir",
               str(tmp_path / "w")])
  assert code == 1 and not (tmp_path / "w").exists()


def test_warnings_print_as_ovjax_lines(tmp_path, capsys, monkeypatch):
  """A warning raised inside a command is one `ovjax: warning:` line (no source path); another
  library's deprecation notice is not shown; the warning machinery is restored afterwards."""
  import warnings
  from ovjax.cli import extract_se
  from ovjax.text.symbols import DroppedSymbolsWarning

  def run(args):
    warnings.warn("dropped characters not in the symbol table: 'ʡ' (U+02A1) x1",
                  DroppedSymbolsWarning)
    warnings.warn_explicit("old API", DeprecationWarning, "/site-packages/lib/x.py", 1)
    return 0

  monkeypatch.setattr(extract_se, "run", run)
  before = warnings.showwarning
  assert main(["extract-se", "--checkpoint", str(CONVERTER), str(tmp_path / "a.wav"), "--out",
               str(tmp_path / "x.npy")]) == 0
  err = capsys.readouterr().err
  assert err == "ovjax: warning: dropped characters not in the symbol table: 'ʡ' (U+02A1) x1\n"
  assert warnings.showwarning is before
