"""Multi-host training on one machine: two processes over loopback (jax.distributed, gloo on CPU),
one device each, train exactly as one process with two devices does."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


KEYS = ("loss_g_total", "loss_d_total", "loss_mel", "loss_kl", "grad_norm_g", "grad_norm_d")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _metrics(workdir):
  return {r["step"]: r for r in map(json.loads, (Path(workdir) / "metrics.jsonl").read_text()
                                    .splitlines()) if "loss_g_total" in r}


def test_two_processes_train_as_one(tmp_path, tiny_corpus):
  manifest = tiny_corpus
  base = [sys.executable, "-m", "ovjax.cli", "train", "converter", "--config", "converter_tiny",
          "--no-progress", f"data.source={manifest}", "train.steps=3", "train.log_every=1"]
  cache = str(tmp_path / "xla_cache")
  env = dict(os.environ, OVJAX_CACHE_DIR=cache, JAX_COMPILATION_CACHE_DIR=cache)
  port = _free_port()
  procs = [subprocess.Popen(base + ["--workdir", str(tmp_path / "two"), "--coordinator",
                                    f"127.0.0.1:{port}", "--num-processes", "2",
                                    "--process-id", str(i)],
                            env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  one = subprocess.run(base + ["--workdir", str(tmp_path / "one")], capture_output=True, text=True,
                       env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2"),
                       timeout=900)
  for p in procs:
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
  assert one.returncode == 0, one.stderr[-3000:]
  two, single = _metrics(tmp_path / "two"), _metrics(tmp_path / "one")
  assert sorted(two) == sorted(single) == [1, 2, 3]
  for step in (1, 2, 3):
    for key in KEYS:
      assert two[step][key] == pytest.approx(single[step][key], rel=1e-5), (step, key)
  # One checkpoint of the run, written by both processes together.
  assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()
                if p.name.isdigit()) == ["3"]
