"""`ovjax train` end to end on a tiny real corpus: losses fall, kill -9 resumes exactly, SIGTERM
saves, a NaN stops with the last good checkpoint kept, the export converts speech; the base TTS
too. Runs go through the CLI in subprocesses sharing one compilation cache."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import reference_path


@pytest.fixture(scope="module")
def corpus(tiny_corpus):
  return tiny_corpus


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  cache = tmp_path_factory.mktemp("xla_cache")
  return dict(os.environ, OVJAX_CACHE_DIR=str(cache), JAX_COMPILATION_CACHE_DIR=str(cache))


def train_cmd(kind, workdir, corpus, *overrides):
  return [sys.executable, "-m", "ovjax.cli", "train", kind, "--config", f"{kind}_tiny",
          "--workdir", str(workdir), "--no-progress", f"data.source={corpus}",
          "train.log_every=1", *overrides]


def run(cmd, env, timeout=900):
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
  return proc.returncode, proc.stdout, proc.stderr


def losses(workdir):
  """{step: metrics} of the training lines (the last line of a step wins: a resumed run redoes
  the steps after its checkpoint)."""
  out = {}
  for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    if "loss_g_total" in record:
      out[record["step"]] = record
  return out


def mean(records, key, steps):
  return float(np.mean([records[s][key] for s in steps]))


@pytest.fixture(scope="module")
def converter_run(corpus, env, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("converter") / "run"
  code, _, err = run(train_cmd("converter", workdir, corpus, "train.steps=300",
                               "train.checkpoint_every=4"), env)
  assert code == 0, err[-3000:]
  return workdir


def test_converter_losses_fall(converter_run):
  """Measured here (means of the first and last 20 of 300 steps, batch 2): mel (45 x L1)
  102 -> 57, KL 9.3 -> 0.8."""
  m = losses(converter_run)
  assert sorted(m) == list(range(1, 301))
  first, last = range(1, 21), range(281, 301)
  assert mean(m, "loss_mel", last) < 0.75 * mean(m, "loss_mel", first)
  assert mean(m, "loss_kl", last) < 0.7 * mean(m, "loss_kl", first)
  assert all(np.isfinite(r["loss_g_total"]) for r in m.values())
  # The workdir: metrics, TensorBoard events, eval samples and a mel picture.
  assert list((converter_run / "tensorboard").glob("events.out.tfevents.*"))
  samples = converter_run / "samples" / "step_0000300"
  assert (samples / "mel.png").stat().st_size > 1000 and list(samples.glob("*.wav"))
  evals = [json.loads(l) for l in (converter_run / "metrics.jsonl").read_text().splitlines()
           if "eval/mel_l1" in l]
  assert evals and np.isfinite(evals[-1]["eval/mel_l1"])


def test_kill_9_resumes_exactly(converter_run, corpus, env, tmp_path):
  """Killed (SIGKILL) after step 6, the run restarts from its step-4 checkpoint and its steps
  5-12 equal the uninterrupted run's."""
  workdir = tmp_path / "run"
  cmd = train_cmd("converter", workdir, corpus, "train.steps=12", "train.checkpoint_every=4")
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.time() + 600
  while time.time() < deadline:
    if (workdir / "metrics.jsonl").exists() and max(losses(workdir), default=0) >= 6:
      break
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert max(losses(workdir)) < 12  # Really interrupted.
  code, _, err = run(cmd, env)
  assert code == 0, err[-3000:]
  resumed, uninterrupted = losses(workdir), losses(converter_run)
  assert sorted(resumed) == list(range(1, 13))
  for step in range(1, 13):
    for key in ("loss_g_total", "loss_d_total", "loss_mel", "loss_kl", "grad_norm_g"):
      assert resumed[step][key] == pytest.approx(uninterrupted[step][key], rel=1e-6), (step, key)


def test_sigterm_saves_and_stops(corpus, env, tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(train_cmd("converter", workdir, corpus, "train.steps=300",
                                    "train.checkpoint_every=100"),
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  while not ((workdir / "metrics.jsonl").exists() and max(losses(workdir), default=0) >= 3):
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=300) == 0
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and saved[-1] == max(losses(workdir)) < 100


def test_a_non_finite_loss_stops_with_the_last_good_checkpoint(corpus, env, tmp_path, monkeypatch):
  """A batch that makes the loss NaN at step 6: one line naming the step, exit status 1, the
  step-4 checkpoint kept and nothing saved after it."""
  import jax
  from ovjax.errors import OvjaxError
  from ovjax.training import trainer
  from ovjax.training.config import load_experiment
  jax.config.update("jax_compilation_cache_dir", env["JAX_COMPILATION_CACHE_DIR"])
  real = trainer._global_batch
  calls = []

  def poisoned(batch, mesh):
    calls.append(1)
    if len(calls) == 6:
      batch = dict(batch, audio=np.full_like(batch["audio"], np.nan))
    return real(batch, mesh)

  monkeypatch.setattr(trainer, "_global_batch", poisoned)
  exp = load_experiment("converter_tiny", [f"data.source={corpus}", "train.steps=12",
                                           "train.checkpoint_every=4", "train.log_every=1"])
  with pytest.raises(OvjaxError, match=r"^step 6: non-finite loss .*step 4\) is kept"):
    trainer.train_and_evaluate(exp, tmp_path / "run", progress=False)
  saved = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert saved == [4]


def test_export_converts_speech(converter_run, env, tmp_path):
  exported = tmp_path / "exported"
  code, _, err = run([sys.executable, "-m", "ovjax.cli", "export", str(converter_run),
                      str(exported)], env)
  assert code == 0, err[-2000:]
  from ovjax.checkpoint.torch_pickle import load_state_dict
  keys = load_state_dict(exported / "checkpoint.pth")
  assert keys and not any(k.startswith("text_enc") for k in keys)  # Inference weights only.
  out = tmp_path / "converted.wav"
  code, _, err = run([sys.executable, "-m", "ovjax.cli", "convert", "--checkpoint", str(exported),
                      "--source", str(reference_path("audio", "demo_speaker0.mp3")),
                      "--reference", str(reference_path("audio", "demo_speaker2.mp3")),
                      "--out", str(out)], env)
  assert code == 0, err[-2000:]
  audio, rate = sf.read(out)
  assert rate == 22050 and abs(len(audio) / rate - 19.3) < 0.1 and np.std(audio) > 1e-4
  # The Orbax layout too, and the same weights in both.
  code, _, err = run([sys.executable, "-m", "ovjax.cli", "export", "--format", "orbax",
                      str(converter_run), str(tmp_path / "orbax")], env)
  assert code == 0, err[-2000:]
  from ovjax.checkpoint.store import load_converter
  a, b = load_converter(exported)[1], load_converter(tmp_path / "orbax")[1]
  import jax
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def test_base_tts_trains_and_speaks(corpus, env, tmp_path):
  """Measured here (first and last 20 of 200 steps): mel 98 -> 56, KL 9.9 -> 1.0, durations
  2.49 -> 2.19."""
  workdir = tmp_path / "run"
  code, _, err = run(train_cmd("base", workdir, corpus, "train.steps=200",
                               "train.checkpoint_every=200", "train.eval_every=200"), env)
  assert code == 0, err[-3000:]
  m = losses(workdir)
  first, last = range(1, 21), range(181, 201)
  assert mean(m, "loss_mel", last) < 0.8 * mean(m, "loss_mel", first)
  assert mean(m, "loss_kl", last) < 0.8 * mean(m, "loss_kl", first)
  assert mean(m, "loss_dur", last) < mean(m, "loss_dur", first)
  exported = tmp_path / "exported"
  code, _, err = run([sys.executable, "-m", "ovjax.cli", "export", str(workdir), str(exported)], env)
  assert code == 0, err[-2000:]
  config = json.loads((exported / "config.json").read_text())
  speakers = json.loads((workdir / "speakers.json").read_text())
  assert config["speakers"] == {name: i for i, name in enumerate(speakers)}
  out = tmp_path / "said.wav"
  code, _, err = run([sys.executable, "-m", "ovjax.cli", "tts", "--checkpoint", str(exported),
                      "--text", "Hello there.", "--style", speakers[0], "--out", str(out)], env)
  assert code == 0, err[-2000:]
  assert sf.info(out).duration > 0.2


def test_bad_configs_and_overrides(corpus, env, tmp_path):
  for args, message in (
      (["train.stepz=3"], "train has no key 'stepz'"),
      (["train.steps=-1"], "train.steps must be positive"),
      (["train.learning_rate=fast"], "train.learning_rate should be float"),
      (["nonsense"], "expected data.KEY=VALUE"),
  ):
    code, _, err = run(train_cmd("converter", tmp_path / "w", corpus, *args), env)
    assert code == 1 and message in err and err.count("\n") == 1, err
  code, _, err = run([sys.executable, "-m", "ovjax.cli", "train", "base", "--config",
                      "converter_tiny", "--workdir", str(tmp_path / "w")], env)
  assert code == 1 and "trains a converter, not a base" in err, err
