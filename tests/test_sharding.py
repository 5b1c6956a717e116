"""Data parallelism over several devices (4 fake CPU devices in a subprocess) changes nothing."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import reference_path

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from ovjax.api import ToneColorConverter, BaseSpeakerTTS
    from ovjax import sharding
    conv_dir, base_dir = sys.argv[1], sys.argv[2]
    devices = jax.devices()
    many = ToneColorConverter.from_pretrained(conv_dir, max_batch=4)
    one = ToneColorConverter.from_pretrained(conv_dir, max_batch=4, devices=devices[:1])
    g = np.load(conv_dir + "/golden.npz")
    waves = [g["src_audio"][:n] for n in (5000, 23000, 44100)] + [g["tgt_audio"]] * 2
    a = many.convert(waves, g["src_se"], g["tgt_se"], tau=0.3, seed=2)
    b = one.convert(waves, g["src_se"], g["tgt_se"], tau=0.3, seed=2)
    batch = next(many._batches(waves))[1]
    tts_many = BaseSpeakerTTS.from_pretrained(base_dir, max_batch=4)
    tts_one = BaseSpeakerTTS.from_pretrained(base_dir, max_batch=4, devices=devices[:1])
    texts = ["Hello world.", "A somewhat longer sentence, spoken here."]
    c = tts_many.synthesize(texts, noise_scale=0, noise_scale_w=0)
    d = tts_one.synthesize(texts, noise_scale=0, noise_scale_w=0)
    print(json.dumps({
        "devices": len(devices),
        "batch_devices": len(batch.sharding.device_set),
        "converter_diff": max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)),
        "tts_diff": max(float(np.max(np.abs(x - y))) for x, y in zip(c, d)),
        "lengths_equal": [len(x) for x in a] == [len(y) for y in b],
    }))
""")


def test_four_devices_equal_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             PYTHONPATH=str(Path(__file__).resolve().parents[1]))
  result = subprocess.run(
      [sys.executable, "-c", SCRIPT, str(reference_path("openvoice", "converter_v1_small")),
       str(reference_path("openvoice", "base_v1_small"))],
      capture_output=True, text=True, env=env, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["devices"] == 4 and out["batch_devices"] == 4
  assert out["lengths_equal"]
  assert out["converter_diff"] < 1e-4
  assert out["tts_diff"] < 1e-4
