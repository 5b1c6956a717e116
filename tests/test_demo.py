"""`ovjax demo` with what ships in the package: the bundled demo converter, espeak-ng as the base
speaker and the bundled reference recording."""
import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from ovjax import assets
from ovjax.api import ToneColorConverter


def _demo(*args, timeout=900):
  return subprocess.run([sys.executable, "-m", "ovjax.cli", "demo", *args], capture_output=True,
                        text=True, timeout=timeout)


def test_demo_writes_speech_in_the_reference_voice_and_its_numbers(tmp_path):
  out = tmp_path / "demo"
  result = _demo("--out-dir", str(out), "--text", "Hello world, this is a short test.")
  assert result.returncode == 0, result.stderr
  base, rate = sf.read(out / "base.wav", dtype="float32")
  converted, rate2 = sf.read(out / "converted.wav", dtype="float32")
  assert rate == rate2 == 22050
  assert abs(len(base) - len(converted)) < 256 and len(base) > rate  # Same speech, > 1 s.
  assert np.all(np.isfinite(converted)) and np.sqrt(np.mean(converted**2)) > 1e-3
  assert (out / "demo.png").read_bytes()[:4] == b"\x89PNG"
  assert "similarity to the reference (resemblyzer cosine):" in result.stdout
  assert sorted(p.name for p in out.iterdir()) == ["base.wav", "converted.wav", "demo.png"]


def test_demo_bad_reference_is_one_line_and_writes_nothing(tmp_path):
  out = tmp_path / "demo"
  result = _demo("--out-dir", str(out), "--reference", str(tmp_path / "missing.mp3"))
  assert result.returncode == 1
  assert result.stderr.count("\n") == 1 and "missing.mp3" in result.stderr
  assert not out.exists()


def test_bundled_converter_loads_and_has_its_card():
  folder = assets.demo_converter()
  tcc = ToneColorConverter.from_pretrained(folder)
  assert tcc.sampling_rate == 22050 and not tcc.config.zero_g
  assert (folder / "checkpoint.pth").stat().st_size < 12 * 2**20  # Ships inside the wheel.
  card = (folder / "MODEL_CARD.md").read_text()
  assert "ovjax train converter --config converter_demo" in card
  assert (folder / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
  results = json.loads((folder / "eval.json").read_text())
  assert {"seen", "unseen"} <= set(results)
