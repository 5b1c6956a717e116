"""`ovjax batch` with host work beside the device: read-ahead and background writes give the same
outputs and report as running inline; errors on either thread fail one job or surface on the
main thread; an interrupted run loses no finished work. And `ovjax bench --stream` (fields only:
timings on a shared machine are noise)."""
import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ovjax import assets, jobs as jobs_lib, stream_bench
from ovjax.api import ToneColorConverter
from ovjax.audio import io as audio_io
from ovjax.audio.io import load_audio
from ovjax.cli import bench

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
CONVERTER = REF / "openvoice" / "converter_v2_small"
SR = 22050


@pytest.fixture(scope="module")
def converter():
  return ToneColorConverter.from_pretrained(CONVERTER, max_batch=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory, converter):
  """Speech cut to mixed lengths and formats, a reference, a non-audio '.wav' and embeddings."""
  d = tmp_path_factory.mktemp("stream_data")
  speech = {rate: load_audio(assets.demo_reference(), rate) for rate in (16000, 44100)}
  for i, seconds in enumerate((2.5, 1.0, 3.0, 1.5, 2.0)):
    rate = (16000, 44100)[i % 2]
    wave = stream_bench.cut_looped(speech[rate], int(i * 1.7 * rate), int(seconds * rate))
    kind = "mp3" if i % 3 == 2 else "wav"
    sf.write(str(d / f"s{i}.{kind}"), wave, rate,
             **({"format": "MP3", "subtype": "MPEG_LAYER_III"} if kind == "mp3" else {}))
  sf.write(str(d / "ref.wav"), speech[16000][5 * 16000:9 * 16000], 16000)
  (d / "broken.wav").write_text("not audio at all\n" * 20)
  rng = np.random.default_rng(0)
  for name in ("src_se", "tgt_se"):
    se = 0.1 * rng.standard_normal(converter.config.gin_channels).astype(np.float32)
    np.save(d / f"{name}.npy", se)
  return d


def _jobs(d):
  se = {"source_se": "src_se.npy", "target_se": "tgt_se.npy"}
  lines = [
      {"id": "a", "source": "s0.wav", **se},
      {"id": "b", "source": "s1.wav", "reference": "ref.wav"},
      {"id": "bad_source", "source": "broken.wav", **se},
      {"id": "c", "source": "s2.mp3", "reference": "ref.wav", "seed": 3},
      {"id": "bad_reference", "source": "s3.wav", "reference": "broken.wav"},
      {"id": "d", "source": "s4.wav", **se, "tau": 0.5},
      {"id": "e", "source": "s3.wav", "source_se": "src_se.npy", "reference": "ref.wav"},
  ]
  path = d / "jobs.jsonl"
  path.write_text("".join(json.dumps(j) + "\n" for j in lines))
  return path


def _run(jobs_file, out_dir, converter, prefetch, **kwargs):
  """Run the jobs file; (report entries in the order reported, the parsed jobs)."""
  jobs = jobs_lib.parse_jobs(jobs_file, out_dir, has_converter=True, has_base=False)
  reported = []
  runner = jobs_lib.JobRunner(out_dir, converter, group_size=2, prefetch=prefetch,
                              on_result=lambda job: reported.append(job.report_entry()),
                              **kwargs)
  runner.run([j for j in jobs if j.status is None])
  return reported, jobs


def test_prefetch_changes_nothing(data, converter, tmp_path, monkeypatch):
  """Outputs (bytes), report entries and their order match the inline run; loads really ran on
  the prefetch thread; a file that is not audio fails only the jobs that read it."""
  threads = []
  real_load = ToneColorConverter.load

  def load(self, audio, name=None):
    threads.append(threading.current_thread().name)
    return real_load(self, audio, name)

  monkeypatch.setattr(ToneColorConverter, "load", load)
  jobs_file = _jobs(data)
  inline, _ = _run(jobs_file, tmp_path / "inline", converter, prefetch=False)
  assert set(threads) == {threading.main_thread().name}
  threads.clear()
  ahead, _ = _run(jobs_file, tmp_path / "ahead", converter, prefetch=True)
  assert "ovjax-prefetch" in threads

  # Same entries in the same order. SHA-256s aside: libsndfile stamps the time of writing into
  # a float WAV's PEAK chunk, so the bytes of equal audio written a second apart differ.
  strip = lambda entries: [{k: v for k, v in e.items() if k != "sha256"} for e in entries]
  assert strip(ahead) == strip(inline)
  status = {e["id"]: (e["status"], e["error"]) for e in ahead}
  assert status.keys() == {"a", "b", "bad_source", "c", "bad_reference", "d", "e"}
  for job_id in ("bad_source", "bad_reference"):
    assert status[job_id][0] == "failed" and "broken.wav" in status[job_id][1]
    assert "not audio" in status[job_id][1] and "\n" not in status[job_id][1]
  for entry in ahead:
    if entry["status"] == "done":
      written = tmp_path / "ahead" / entry["out"]
      assert np.array_equal(sf.read(str(written))[0],
                            sf.read(str(tmp_path / "inline" / entry["out"]))[0])
      assert entry["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
  assert sorted(e["id"] for e in ahead if e["status"] == "done") == ["a", "b", "c", "d", "e"]


def test_write_error_fails_its_job_alone(data, converter, tmp_path, monkeypatch):
  real_write = audio_io.write_wav

  def write_wav(path, audio, rate):
    if Path(path).name == "c.wav":
      raise OSError(28, "No space left on device")
    return real_write(path, audio, rate)

  monkeypatch.setattr(audio_io, "write_wav", write_wav)
  reported, _ = _run(_jobs(data), tmp_path / "out", converter, prefetch=True)
  status = {e["id"]: (e["status"], e["error"]) for e in reported}
  assert status["c"] == ("failed", f"cannot write {tmp_path / 'out' / 'c.wav'}: "
                                   "No space left on device")
  assert status["a"][0] == status["d"][0] == "done"
  assert not (tmp_path / "out" / "c.wav").exists()


def test_writer_crash_surfaces_on_the_main_thread(data, converter, tmp_path, monkeypatch):
  """An unexpected error on the writer thread is raised by `run`; nothing after it is reported,
  and every reported output is on disk, whole."""
  real_write = audio_io.write_wav

  def write_wav(path, audio, rate):
    if Path(path).name == "c.wav":
      raise RuntimeError("writer bug")
    return real_write(path, audio, rate)

  monkeypatch.setattr(audio_io, "write_wav", write_wav)
  reported = []
  jobs = jobs_lib.parse_jobs(_jobs(data), tmp_path / "out", has_converter=True, has_base=False)
  runner = jobs_lib.JobRunner(tmp_path / "out", converter, group_size=2,
                              on_result=lambda job: reported.append(job.report_entry()))
  with pytest.raises(RuntimeError, match="writer bug"):
    runner.run([j for j in jobs if j.status is None])
  assert "c" not in [e["id"] for e in reported]
  for entry in reported:
    if entry["status"] == "done":
      path = tmp_path / "out" / entry["out"]
      assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
  assert not list((tmp_path / "out").glob(".*.tmp"))


def test_interrupt_keeps_finished_work(data, converter, tmp_path, monkeypatch):
  """Ctrl-C during a later group: the groups already converted are written and reported before
  the interrupt leaves `run`; no temporary is left."""
  real_convert = ToneColorConverter.convert
  calls = []

  def convert(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return real_convert(self, *args, **kwargs)

  monkeypatch.setattr(ToneColorConverter, "convert", convert)
  # Groups of ~2 s of audio, so these short clips make several groups.
  monkeypatch.setattr(jobs_lib, "group_seconds", lambda converter, group_size: 2.0)
  reported = []
  out_dir = tmp_path / "out"
  jobs = jobs_lib.parse_jobs(_jobs(data), out_dir, has_converter=True, has_base=False)
  runner = jobs_lib.JobRunner(out_dir, converter, group_size=2,
                              on_result=lambda job: reported.append(job.report_entry()))
  with pytest.raises(KeyboardInterrupt):
    runner.run([j for j in jobs if j.status is None])
  done = [e for e in reported if e["status"] == "done"]
  assert len(done) >= 2  # The first two converted groups.
  assert sorted(p.name for p in out_dir.glob("*.wav")) == sorted(e["out"] for e in done)
  for entry in done:
    assert entry["bytes"] == (out_dir / entry["out"]).stat().st_size
  assert not list(out_dir.glob(".*.tmp"))


def test_conversion_groups_follow_tau_and_audio_budget(data):
  """Groups keep one tau each, keep job order, close once they hold the audio budget (the group
  that crosses it included), and never exceed 8 x group_size jobs."""
  def job(i, source, tau=0.3):
    return jobs_lib.Job(line=i, spec={"source": data / source, "tau": tau})

  # Clips of 2.5, 1.0, 3.0, 1.5, 2.0 s (s0..s4).
  jobs = [job(0, "s0.wav"), job(1, "s1.wav"), job(2, "s4.wav", tau=0.5), job(3, "s2.mp3"),
          job(4, "s3.wav"), job(5, "s4.wav")]
  lines = lambda groups: [[j.line for j in g] for g in groups]  # noqa: E731
  assert lines(jobs_lib.conversion_groups(jobs, 2, 3.4)) == [[0, 1], [3, 4], [5], [2]]
  assert lines(jobs_lib.conversion_groups(jobs, 2)) == [[0, 1], [3, 4], [5], [2]]
  assert lines(jobs_lib.conversion_groups(jobs, 1, 100.0)) == [[0, 1, 3, 4, 5], [2]]
  many = [job(i, "s1.wav") for i in range(20)]
  assert [len(g) for g in jobs_lib.conversion_groups(many, 1, 100.0)] == [8, 8, 4]


def test_prefetch_raises_in_order_on_the_consumer():
  def load(item):
    if item == 2:
      raise ValueError("boom")
    return item * 10

  for reader in (jobs_lib.Prefetch, jobs_lib.Inline):
    got = []
    with pytest.raises(ValueError, match="boom"):
      with reader([0, 1, 2, 3], load) as items:
        for item, value in items:
          got.append((item, value))
    assert got == [(0, 0), (1, 10)], reader


def test_prefetch_stops_when_left_early():
  started = []
  with jobs_lib.Prefetch(range(1000), lambda i: started.append(i) or i, depth=1) as items:
    for item, _ in items:
      if item == 1:
        break
  assert len(started) <= 4  # Bounded read-ahead, and the thread ended with the block.


def test_writer_runs_in_order_then_raises():
  done = []
  writer = jobs_lib.Writer(depth=2)
  for i in range(5):
    writer.submit(lambda i=i: done.append(i))
  writer.close()
  assert done == list(range(5))

  writer = jobs_lib.Writer(depth=2)
  writer.submit(lambda: done.append("a"))
  writer.submit(lambda: 1 / 0)
  writer.submit(lambda: done.append("never"))  # After an error nothing more runs.
  with pytest.raises(ZeroDivisionError):
    writer.close()
  assert done[-1] == "a"


# -- `ovjax bench --stream` ------------------------------------------------------------------------


def test_stream_lengths():
  lengths = stream_bench.stream_lengths(60, 1, 20, seed=1)
  assert sum(lengths) >= 60 and sum(lengths[:-1]) < 60
  assert all(1 <= x <= 20 for x in lengths)
  assert stream_bench.stream_lengths(60, 1, 20, seed=1) == lengths
  wave = np.arange(10, dtype=np.float32)
  assert list(stream_bench.cut_looped(wave, 8, 5)) == [8, 9, 0, 1, 2]


def test_stream_bench_fields():
  r = stream_bench.run_stream_benchmark(CONVERTER / "config.json", total_seconds=5,
                                        max_seconds=2.5, group_size=2)
  assert r["files"] >= 2 and 5 <= r["input_audio_seconds"] < 7.5
  # Output audio: each input floored to whole frames of 256 samples.
  assert r["input_audio_seconds"] - r["files"] * 256 / SR <= r["audio_seconds"] \
      <= r["input_audio_seconds"]
  for mode in ("compute", "end_to_end", "serial"):
    assert r[f"{mode}_s"] > 0 and len(r["times_s"][mode]) == 1
    assert r[f"{mode}_audio_s_per_s"] == pytest.approx(r["audio_seconds"] / r[f"{mode}_s"])
  assert r["ratio"] == pytest.approx(r["end_to_end_audio_s_per_s"] /
                                     r["compute_audio_s_per_s"])
  assert r["compiles"] >= 1 and r["compile_s"] > 0 and r["warmup_s"] >= r["compile_s"]
  assert r["timed_compiles"] == 0  # The warm-up compiled everything both timed runs use.
  assert r["outputs_identical"] is True
  lines = stream_bench.format_stream(r).splitlines()
  assert lines[0].startswith(f"stream: {r['files']} files") and "ratio" in lines[1]


def test_cli_stream_in_json_and_table(tmp_path, capsys):
  parser = __import__("argparse").ArgumentParser()
  bench.register(parser.add_subparsers(dest="command"))
  out = tmp_path / "bench.json"
  args = parser.parse_args([
      "bench", "--quick", "--models", "converter", "--batch-sizes", "1", "--seconds", "1",
      "--repeats", "1", "--no-bfloat16", "--converter-config", str(CONVERTER / "config.json"),
      "--stream", "--stream-seconds", "3", "--json", str(out)])
  assert bench.run(args) == 0
  table = capsys.readouterr().out
  assert "stream:" in table and "end to end" in table
  data = json.loads(out.read_text())
  assert data["stream"]["lengths"]["high_s"] == 4.0 and data["stream"]["repeats"] == 1
  assert data["stream"]["ratio"] > 0
