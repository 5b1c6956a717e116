"""Ranges of every number a user passes (seeds, speed, noise, sdp_ratio, tau) and the text and
name length limits: the same values refused with the same one-line message by the Python API,
the CLI and batch jobs (where a bad job fails alone)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ovjax import batching
from ovjax.cli import main
from ovjax.errors import OvjaxError, TextError
from ovjax.jobs import parse_jobs

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "reference"
BASE = REF / "openvoice" / "base_v1_small"
CONVERTER = REF / "openvoice" / "converter_v2_small"
TEXT = "Hello world."
LONG_TEXT = "a" * (batching.MAX_TEXT_CHARS + 1)

# (option, bad value, what the message says).
BAD_NUMBERS = [
    ("speed", 1e-6, "speed must be a finite number in [0.1, 10], got 1e-06"),
    ("speed", 0, "speed must be a finite number > 0, got 0"),
    ("speed", 11, "speed must be a finite number in [0.1, 10], got 11"),
    ("speed", float("nan"), "speed must be a finite number in [0.1, 10], got nan"),
    ("noise_scale", -0.1, "noise_scale must be a finite number in [0, 10], got -0.1"),
    ("noise_scale", float("inf"), "noise_scale must be a finite number in [0, 10], got inf"),
    ("noise_scale_w", 10.5, "noise_scale_w must be a finite number in [0, 10], got 10.5"),
    ("sdp_ratio", 1.5, "sdp_ratio must be a finite number in [0, 1], got 1.5"),
]
BAD_SEEDS = [-1, 2**32, 2**63, 2**64 + 1, True]


@pytest.fixture(scope="module")
def base():
  from ovjax.api import BaseSpeakerTTS
  return BaseSpeakerTTS.from_pretrained(BASE)


@pytest.fixture(scope="module")
def converter():
  from ovjax.api import ToneColorConverter
  return ToneColorConverter.from_pretrained(CONVERTER)


def test_jax_keeps_32_bits_of_a_seed():
  """Why seeds are [0, 2**32): without x64, key(2**32) is key(0) and key(-1) is key(2**32 - 1)."""
  import jax
  if jax.config.jax_enable_x64:
    pytest.skip("x64 keeps 64 bits")
  data = lambda s: np.asarray(jax.random.key_data(jax.random.key(s)))
  np.testing.assert_array_equal(data(2**32), data(0))
  np.testing.assert_array_equal(data(-1), data(2**32 - 1))


# -- the Python API --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,value,message", BAD_NUMBERS)
def test_api_refuses_out_of_range_numbers(base, name, value, message):
  message = message.replace("got 11", "got 11.0").replace("got 0", "got 0.0")
  for call in (lambda: base.synthesize(TEXT, **{name: value}),
               lambda: base.tts(TEXT, **{name: value}),
               lambda: base.infer_ids([[1, 2, 3]], **{name: value})):
    with pytest.raises(OvjaxError) as e:
      call()
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("seed", BAD_SEEDS + [1.5, "1", [0, -1]])
def test_api_refuses_bad_seeds(base, converter, seed):
  with pytest.raises(OvjaxError, match="seed"):
    base.synthesize([TEXT, TEXT] if isinstance(seed, list) else TEXT, seed=seed)
  with pytest.raises(OvjaxError, match="seed"):
    base.infer_ids([[1, 2, 3]], seed=seed if not isinstance(seed, list) else [seed[1]])
  wave = np.zeros(converter.sampling_rate, np.float32)
  se = np.zeros(converter.config.gin_channels, np.float32)
  with pytest.raises(OvjaxError, match="seed"):
    converter.convert([wave, wave] if isinstance(seed, list) else wave, se, se, seed=seed)


def test_item_keys_checks_seeds():
  for seed in BAD_SEEDS:
    with pytest.raises(OvjaxError, match=r"seed must be an integer in \[0, 4294967295\]"):
      batching.item_keys(seed, 1)
    with pytest.raises(OvjaxError, match="seed must be an integer"):
      batching.item_keys([(seed, 0)], 1)
  assert batching.item_keys(2**32 - 1, 2).shape == (2,)
  assert batching.item_keys([np.int64(3)], 1).shape == (1,)


@pytest.mark.parametrize("tau", [-0.1, 10.5, float("nan"), float("inf"), True])
def test_api_refuses_bad_tau(converter, tau):
  wave = np.zeros(converter.sampling_rate, np.float32)
  se = np.zeros(converter.config.gin_channels, np.float32)
  with pytest.raises(OvjaxError, match=r"^tau must be a finite number in \[0, 10\]"):
    converter.convert(wave, se, se, tau=tau)


def test_api_refuses_long_text(base):
  with pytest.raises(TextError, match="20001 characters, more than the 20000 allowed"):
    base.synthesize(LONG_TEXT)
  with pytest.raises(TextError, match="^text 1: 20001 characters"):
    base.synthesize([TEXT, LONG_TEXT])


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_speaker_refuses_bad_speed_and_long_text():
  from ovjax.api import EspeakSpeaker
  speaker = EspeakSpeaker("en-us")
  with pytest.raises(OvjaxError, match=r"speed must be a finite number in \[0.1, 10\]"):
    speaker.synthesize(TEXT, speed=1e-6)
  with pytest.raises(TextError, match="20001 characters"):
    speaker.synthesize(LONG_TEXT)


# -- the CLI ---------------------------------------------------------------------------------------


def _run(capsys, *argv):
  capsys.readouterr()
  code = main([str(a) for a in argv])
  return code, capsys.readouterr().err


@pytest.mark.parametrize("name,value,message", BAD_NUMBERS)
def test_cli_refuses_out_of_range_numbers(capsys, tmp_path, name, value, message):
  flag = "--" + name.replace("_", "-")
  out = tmp_path / "x.wav"
  code, err = _run(capsys, "tts", "--checkpoint", BASE, "--text", TEXT, "--out", out, flag,
                   str(value))
  expected = message.replace(f"{name} ", f"argument {flag}: ", 1)
  expected = expected.replace("got 1e-06", f"got {value}")
  assert code == 2 and expected in err and "Traceback" not in err
  assert not out.exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**64), "1.5", "x"])
def test_cli_refuses_bad_seeds(capsys, tmp_path, seed):
  code, err = _run(capsys, "tts", "--checkpoint", BASE, "--text", TEXT, "--out",
                   tmp_path / "x.wav", "--seed", seed)
  assert code == 2 and "argument --seed:" in err and "Traceback" not in err
  if seed.lstrip("-").isdigit():
    assert "must be an integer in [0, 4294967295]" in err


def test_cli_refuses_long_text(capsys, tmp_path):
  out = tmp_path / "x.wav"
  code, err = _run(capsys, "-q", "tts", "--checkpoint", BASE, "--text", LONG_TEXT, "--out", out)
  assert code == 1 and "--text: 20001 characters, more than the 20000 allowed" in err
  assert len(err.strip().splitlines()) == 1
  text_file = tmp_path / "t.txt"
  text_file.write_text("é" * (batching.MAX_TEXT_CHARS + 1), encoding="utf-8")
  code, err = _run(capsys, "-q", "tts", "--checkpoint", BASE, "--text-file", text_file,
                   "--out", out)
  assert code == 1 and "20001 characters" in err and len(err.strip().splitlines()) == 1
  text_file.write_bytes(b"a" * (4 * batching.MAX_TEXT_CHARS + 10))  # Refused before reading.
  code, err = _run(capsys, "-q", "tts", "--checkpoint", BASE, "--text-file", text_file,
                   "--out", out)
  assert code == 1 and "more than the 20000 characters allowed" in err
  assert not out.exists()


# -- batch jobs ------------------------------------------------------------------------------------


GOOD = {"text": TEXT, "id": "good"}
BAD_JOBS = [
    ({"seed": 2**64}, "'seed' must be an integer in [0, 4294967295]"),
    ({"seed": -1}, "'seed' must be an integer in [0, 4294967295]"),
    ({"seed": "HUGE"}, "bad JSON: an integer of more than 4300 digits"),
    ({"seed": 1.0}, "'seed' must be an integer"),
    ({"seed": True}, "'seed' must be an integer"),
    ({"seed": {"a": [1]}}, "'seed' must be an integer"),
    ({"speed": 1e-6}, "'speed' must be a finite number in [0.1, 10], got 1e-06"),
    ({"speed": 0}, "'speed' must be a finite number > 0"),
    ({"speed": 2**2000}, "'speed' must be a finite number in [0.1, 10]"),
    ({"noise_scale": 11}, "'noise_scale' must be a finite number in [0, 10]"),
    ({"noise_scale_w": -1}, "'noise_scale_w' must be a finite number in [0, 10]"),
    ({"sdp_ratio": 2}, "'sdp_ratio' must be a finite number in [0, 1]"),
    ({"reference": "r.wav", "tau": 11}, "'tau' must be a finite number in [0, 10]"),
    ({"id": "a" * 256}, "'id': 256 characters, more than the 255 allowed"),
    ({"id": 10**300}, "'id': 301 characters, more than the 255 allowed"),
    ({"id": 10**1000}, "'id': an integer of 3322 bits, more than 255 digits"),
    ({"out": "a" * 256 + ".wav"}, "'out': 260 characters, more than the 255 allowed"),
    ({"out": "a" * 240 + ".wav"}, "a folder or file name longer than 237 bytes"),
    ({"out": "\ud800.wav"}, "'out' is not valid Unicode text"),
    ({"text": LONG_TEXT}, "'text': 20001 characters, more than the 20000 allowed"),
    ({"text": {"nested": [[[]]]}}, "'text' must be a string"),
]


def _write_jobs(path, lines):
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.mark.parametrize("change,message", BAD_JOBS)
def test_bad_job_fails_alone(tmp_path, change, message):
  bad = dict(GOOD, id="bad")
  bad.update(change)
  line = json.dumps(bad).replace('"HUGE"', "1" + "0" * 5000)  # json.dumps refuses such an int.
  jobs_file = tmp_path / "jobs.jsonl"
  _write_jobs(jobs_file, [json.dumps(GOOD), line, json.dumps(dict(GOOD, id="g2"))])
  jobs = parse_jobs(jobs_file, tmp_path / "out", has_converter=True, has_base=True)
  assert [j.status for j in jobs] == [None, "failed", None]
  assert message in jobs[1].error and "\n" not in jobs[1].error
  assert len(jobs[1].error) < 400


def test_bad_default_seed_is_refused(tmp_path):
  jobs_file = tmp_path / "jobs.jsonl"
  _write_jobs(jobs_file, [json.dumps(GOOD)])
  with pytest.raises(OvjaxError, match=r"--seed must be an integer in \[0, 4294967295\]"):
    parse_jobs(jobs_file, tmp_path / "out", has_converter=True, has_base=True, seed=2**32)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**80, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=300)
    | st.sampled_from(["x.wav", "a/b.wav", "../x.wav", "/abs.wav", ".x.wav.0123456789ab.tmp"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)
_KEYS = ["id", "out", "seed", "text", "style", "language", "speed", "noise_scale",
         "noise_scale_w", "sdp_ratio", "tau", "vad", "reference", "target_se", "source",
         "source_se"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(job=st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=4), key=st.sampled_from(_KEYS),
       value=_JSON)
def test_any_json_value_gives_a_failed_or_pending_job(tmp_path, job, key, value):
  job = dict(job, **{key: value})
  line = json.dumps(job)
  jobs_file = tmp_path / "jobs.jsonl"
  _write_jobs(jobs_file, [line, json.dumps(GOOD)])
  jobs = parse_jobs(jobs_file, tmp_path / "out", has_converter=True, has_base=True)
  assert jobs[0].status in (None, "failed", "skipped")
  if jobs[0].status == "failed":
    assert jobs[0].error and "\n" not in jobs[0].error
  assert jobs[1].status is None or (jobs[1].status == "failed" and "also the output" in
                                    jobs[1].error)
