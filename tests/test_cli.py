"""The `ovjax` command line, run in-process through `main([...])` (one subprocess test).

Covers parity with the reference through the CLI, the real mp3 path, and that every bad input
ends in exit 1, one `ovjax: error:` line, no traceback and no output file.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ovjax.cli import main

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "reference"
V2 = REF / "openvoice" / "converter_v2_small"
V1 = REF / "openvoice" / "converter_v1_small"
SPEAKER0 = REF / "audio" / "demo_speaker0.mp3"
EXAMPLE_REF = REF / "audio" / "example_reference.mp3"
SR = 22050


def _golden(folder):
  return dict(np.load(folder / "golden.npz"))


def _write_wav(path, audio, sr=SR):
  sf.write(str(path), np.asarray(audio, np.float32), sr, subtype="FLOAT")
  return path


def _run(capsys, *argv):
  """main(argv) -> (exit code, stdout, stderr)."""
  capsys.readouterr()  # Drop anything printed before.
  code = main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
  monkeypatch.delenv("OVJAX_DEBUG", raising=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
  """Inputs shared by the tests: golden audio as WAVs, golden embeddings as .npy."""
  d = tmp_path_factory.mktemp("cli")
  files = {}
  for name, folder in (("v2", V2), ("v1", V1)):
    g = _golden(folder)
    files[name] = {
        "golden": g,
        "src": _write_wav(d / f"{name}_src.wav", g["src_audio"]),
        "tgt": _write_wav(d / f"{name}_tgt.wav", g["tgt_audio"]),
    }
    for key in ("src_se", "tgt_se"):
      files[name][key] = d / f"{name}_{key}.npy"
      np.save(files[name][key], g[key].astype(np.float32))  # [1, gin, 1], as the reference has
  files["dir"] = d
  return files


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  """An official-layout folder with a tone-colour file beside the weights, imported by the CLI."""
  d = tmp_path_factory.mktemp("import")
  official = d / "official"
  official.mkdir()
  for name in ("config.json", "checkpoint.pth"):
    shutil.copy(V2 / name, official / name)
  shutil.copy(REF / "openvoice_v2_ses" / "en-us.pth", official / "en_default_se.pth")
  dst = d / "nested" / "imported"
  assert main(["-q", "import-checkpoint", str(official), str(dst)]) == 0
  return official, dst


def _assert_clean_failure(code, err, out_path=None):
  lines = err.splitlines()
  assert code == 1, err
  assert len(lines) == 1 and lines[0].startswith("ovjax: error:"), err
  assert "Traceback" not in err
  if out_path is not None:
    out_path = Path(out_path)
    assert not out_path.exists() or out_path.is_dir()
    if out_path.parent.is_dir():  # No temp file left behind either.
      assert not [p for p in out_path.parent.iterdir() if p.name.endswith(".tmp")]


# -- parity with the reference ---------------------------------------------------------------


@pytest.mark.parametrize("model,which", [("v2", "official"), ("v2", "imported"),
                                         ("v1", "official")])
def test_convert_matches_reference(work, imported, capsys, tmp_path, model, which):
  files = work[model]
  checkpoint = {"official": V2 if model == "v2" else V1, "imported": imported[1]}[which]
  out = tmp_path / "vc.wav"
  code, _, err = _run(capsys, "convert", "--checkpoint", checkpoint, "--source", files["src"],
                      "--source-se", files["src_se"], "--target-se", files["tgt_se"],
                      "--tau", "0", "--out", out)
  assert code == 0, err
  audio, sr = sf.read(str(out), dtype="float32")
  assert sr == SR and sf.info(str(out)).subtype == "FLOAT"
  want = files["golden"]["vc_audio"].reshape(-1)
  assert audio.shape == want.shape
  assert np.max(np.abs(audio - want)) < 1e-4
  assert err.splitlines()[-1].startswith(f"wrote {out} (2.0 s of audio in ")


def test_extract_se_no_vad_matches_reference(work, capsys):
  out = work["dir"] / "sub" / "tgt_se_cli.npy"  # Missing parent folders are created.
  code, _, err = _run(capsys, "-q", "extract-se", "--checkpoint", V2, "--no-vad",
                      work["v2"]["tgt"], "--out", out)
  assert code == 0 and err == ""
  se = np.load(out)
  want = work["v2"]["golden"]["tgt_se"].reshape(-1)
  assert se.dtype == np.float32 and se.shape == want.shape == (32,)
  assert np.max(np.abs(se - want)) < 1e-4


def test_extract_se_with_vad_averages_references(work, capsys, tmp_path):
  one, two = tmp_path / "one.npy", tmp_path / "two.npy"
  assert main(["-q", "extract-se", "--checkpoint", str(V2), str(SPEAKER0), "--out", str(one)]) == 0
  code, _, err = _run(capsys, "extract-se", "--checkpoint", V2, SPEAKER0, EXAMPLE_REF,
                      "--out", two)
  assert code == 0, err
  assert "2 references" in err
  a, b = np.load(one), np.load(two)
  assert a.shape == b.shape == (32,) and np.all(np.isfinite(b))
  assert not np.allclose(a, b)  # The second reference counts.


# -- real recordings ---------------------------------------------------------------------------


def test_convert_mp3_with_reference(capsys, tmp_path):
  from ovjax.audio.io import load_audio
  out = tmp_path / "out.wav"
  code, _, err = _run(capsys, "convert", "--checkpoint", V2, "--source", SPEAKER0,
                      "--reference", EXAMPLE_REF, "--out", out)
  assert code == 0, err
  for status in ("loading checkpoint", "extracting source", "extracting target", "converting",
                 "wrote"):
    assert status in err
  audio, sr = sf.read(str(out), dtype="float32")
  n = len(load_audio(SPEAKER0, SR))
  assert sr == SR and len(audio) == (n // 256) * 256
  assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 1e-3


def test_convert_is_seeded(work, capsys, tmp_path):
  files, outs = work["v2"], []
  for i, seed in enumerate((1, 1, 2)):
    outs.append(tmp_path / f"s{i}.wav")
    code, _, err = _run(capsys, "convert", "--checkpoint", V2, "--source", files["src"],
                        "--source-se", files["src_se"], "--target-se", files["tgt_se"],
                        "--seed", seed, "--no-vad", "--out", outs[-1], "-q")  # -q after, too
    assert code == 0 and err == ""
  a, b, c = (sf.read(str(p), dtype="float32")[0] for p in outs)
  assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_convert_refuses_pth_embedding_of_wrong_size(work, imported, capsys, tmp_path):
  # The imported folder keeps the official en_default_se.pth; a torch .pth SE of the wrong size
  # (256 channels for this 32-channel model) is refused cleanly, the .npy one works.
  out = tmp_path / "o.wav"
  code, _, err = _run(capsys, "-q", "convert", "--checkpoint", imported[1], "--source",
                      work["v2"]["src"], "--target-se", imported[1] / "en_default_se.pth",
                      "--source-se", work["v2"]["src_se"], "--out", out)
  _assert_clean_failure(code, err, out)
  assert "256 channels" in err


# -- import-checkpoint ---------------------------------------------------------------------------


def test_import_checkpoint_layout(imported, capsys, tmp_path):
  official, dst = imported
  assert sorted(p.name for p in dst.iterdir()) == [
      "config.json", "en_default_se.pth", "ovjax.json", "params"]
  assert not [p for p in dst.parent.iterdir() if p.name.endswith(".tmp")]
  # Summary on stdout (not with -q), progress on stderr.
  code, out, err = _run(capsys, "import-checkpoint", official, tmp_path / "again")
  assert code == 0, err
  assert out.startswith("imported ") and "v2 converter" in out and " parameters" in out
  assert "en_default_se.pth" in out and len(out.splitlines()) == 1


def test_import_checkpoint_refuses_non_empty_destination(imported, capsys, tmp_path):
  official, _ = imported
  dst = tmp_path / "busy"
  dst.mkdir()
  (dst / "keep.txt").write_text("mine")
  code, _, err = _run(capsys, "import-checkpoint", official, dst)
  _assert_clean_failure(code, err)
  assert "not empty" in err and [p.name for p in dst.iterdir()] == ["keep.txt"]
  a_file = tmp_path / "file"
  a_file.write_text("x")
  code, _, err = _run(capsys, "import-checkpoint", official, a_file)
  _assert_clean_failure(code, err)
  assert a_file.read_text() == "x"


def test_import_checkpoint_refuses_mismatched_config(capsys, tmp_path):
  bad = _mismatched_checkpoint(tmp_path)
  dst = tmp_path / "dst"
  code, _, err = _run(capsys, "-q", "import-checkpoint", bad, dst)
  _assert_clean_failure(code, err)
  assert not dst.exists()


# -- bad input -----------------------------------------------------------------------------------


def _mismatched_checkpoint(root):
  folder = root / "mismatched"
  folder.mkdir()
  config = json.loads((V2 / "config.json").read_text())
  config["model"]["gin_channels"] = 48
  (folder / "config.json").write_text(json.dumps(config))
  shutil.copy(V2 / "checkpoint.pth", folder / "checkpoint.pth")
  return folder


def _bad_case(name, work, root):
  """(argv, out path) of a convert (or extract-se) run that must fail."""
  src, src_se, tgt_se = work["v2"]["src"], work["v2"]["src_se"], work["v2"]["tgt_se"]
  out = root / "out" / "x.wav"
  ckpt = V2
  if name == "missing_source":
    src = root / "nope.wav"
  elif name == "text_as_wav":
    src = root / "text.wav"
    src.write_text("not audio at all\n")
  elif name == "zero_byte_wav":
    src = root / "zero.wav"
    src.write_bytes(b"")
  elif name == "empty_wav":
    src = _write_wav(root / "empty.wav", np.zeros(0))
  elif name == "silent_wav":
    src = _write_wav(root / "silent.wav", np.zeros(SR))
  elif name == "nan_wav":
    audio = work["v2"]["golden"]["src_audio"].copy()
    audio[1000] = np.nan
    src = _write_wav(root / "nan.wav", audio)
  elif name == "too_short_wav":
    src = _write_wav(root / "short.wav", np.full(300, 0.1))
  elif name == "no_config":
    ckpt = root / "empty_ckpt"
    ckpt.mkdir()
    shutil.copy(V2 / "checkpoint.pth", ckpt / "checkpoint.pth")
  elif name == "missing_checkpoint":
    ckpt = root / "no_such_ckpt"
  elif name == "mismatched_config":
    ckpt = _mismatched_checkpoint(root)
  elif name == "se_wrong_shape":
    tgt_se = root / "seven.npy"
    np.save(tgt_se, np.ones(7, np.float32))
  elif name == "se_nan":
    tgt_se = root / "nan_se.npy"
    np.save(tgt_se, np.full(32, np.nan, np.float32))
  elif name == "se_missing":
    src_se = root / "nope.npy"
  elif name == "se_not_npy":
    tgt_se = root / "text.npy"
    tgt_se.write_text("nope")
  elif name == "se_not_pth":
    tgt_se = root / "text.pth"
    tgt_se.write_text("nope")
  elif name == "out_is_dir":
    out = root / "existing_dir"
    out.mkdir()
  elif name == "out_parent_is_file":
    (root / "afile").write_text("x")
    out = root / "afile" / "x.wav"
  elif name == "out_not_wav":
    out = root / "out" / "x.mp3"
  elif name == "silent_reference":
    out = root / "out" / "x.wav"
    silent = _write_wav(root / "silent_ref.wav", np.zeros(SR))
    return (["convert", "--checkpoint", ckpt, "--source", src, "--reference", silent,
             "--out", out], out)
  elif name == "extract_se_missing_reference":
    out = root / "out" / "se.npy"
    return ["extract-se", "--checkpoint", ckpt, root / "nope.wav", "--out", out], out
  elif name == "extract_se_no_speech":
    out = root / "out" / "se.npy"
    noise = np.random.default_rng(0).normal(0, 0.01, 3 * SR)  # Steady noise: no speech.
    return (["extract-se", "--checkpoint", ckpt, _write_wav(root / "noise.wav", noise),
             "--out", out], out)
  else:
    raise AssertionError(name)
  return (["convert", "--checkpoint", ckpt, "--source", src, "--source-se", src_se,
           "--target-se", tgt_se, "--out", out], out)


BAD_CASES = ["missing_source", "text_as_wav", "zero_byte_wav", "empty_wav", "silent_wav",
             "nan_wav", "too_short_wav", "no_config", "missing_checkpoint", "mismatched_config",
             "se_wrong_shape", "se_nan", "se_missing", "se_not_npy", "se_not_pth", "out_is_dir",
             "out_parent_is_file", "out_not_wav", "silent_reference",
             "extract_se_missing_reference", "extract_se_no_speech"]


@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_input_fails_cleanly(name, work, capsys, tmp_path):
  argv, out = _bad_case(name, work, tmp_path)
  code, stdout, err = _run(capsys, "-q", *argv)
  _assert_clean_failure(code, err, out)
  assert stdout == ""
  assert not (tmp_path / "out").exists()  # Not even the output's folder was created.


def test_missing_input_fails_before_loading_the_checkpoint(work, capsys, tmp_path):
  # Without -q there would be a "loading checkpoint" line if the check came late.
  out = tmp_path / "x.wav"
  code, _, err = _run(capsys, "convert", "--checkpoint", V2, "--source", tmp_path / "nope.wav",
                      "--target-se", work["v2"]["tgt_se"], "--out", out)
  _assert_clean_failure(code, err, out)
  assert "nope.wav" in err


def test_usage_errors_exit_2(work, capsys, tmp_path):
  base = ["convert", "--checkpoint", str(V2), "--source", str(work["v2"]["src"])]
  for argv in ([], ["convert"], base + ["--out", "x.wav"],  # no target
               base + ["--reference", "a.wav", "--target-se", "b.npy", "--out", "x.wav"],
               base + ["--target-se", "b.npy", "--tau", "-1", "--out", "x.wav"],
               base + ["--target-se", "b.npy", "--tau", "nan", "--out", "x.wav"],
               ["frobnicate"]):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "usage:" in err and "Traceback" not in err, argv


def test_version_and_help(capsys):
  import ovjax
  code, out, _ = _run(capsys, "--version")
  assert code == 0 and out.strip() == f"ovjax {ovjax.__version__}"
  code, out, _ = _run(capsys, "--help")
  assert code == 0 and "convert" in out and "import-checkpoint" in out


def test_internal_error_is_one_line_unless_debugging(work, capsys, monkeypatch, tmp_path):
  from ovjax import api

  def boom(*args, **kwargs):
    raise RuntimeError("kaput\nsecond line")

  monkeypatch.setattr(api.ToneColorConverter, "from_pretrained", boom)
  argv = ["-q", "convert", "--checkpoint", V2, "--source", work["v2"]["src"], "--target-se",
          work["v2"]["tgt_se"], "--out", tmp_path / "x.wav"]
  code, _, err = _run(capsys, *argv)
  assert code == 3
  assert err == ("ovjax: internal error: RuntimeError: kaput second line "
                 "(set OVJAX_DEBUG=1 for a traceback)\n")
  monkeypatch.setenv("OVJAX_DEBUG", "1")
  with pytest.raises(RuntimeError, match="kaput"):
    main([str(a) for a in argv])
  # Bad input stays a one-line error when debugging: it is not a bug.
  argv[argv.index("--source") + 1] = tmp_path / "nope.wav"
  code, _, err = _run(capsys, *argv)
  _assert_clean_failure(code, err)


def test_keyboard_interrupt_exits_130(work, capsys, monkeypatch, tmp_path):
  from ovjax import api

  def interrupt(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(api.ToneColorConverter, "from_pretrained", interrupt)
  code, _, err = _run(capsys, "convert", "--checkpoint", V2, "--source", work["v2"]["src"],
                      "--target-se", work["v2"]["tgt_se"], "--out", tmp_path / "x.wav")
  assert code == 130 and err.splitlines()[-1] == "ovjax: interrupted"
  assert not (tmp_path / "x.wav").exists()


# -- as a real process -----------------------------------------------------------------------------


def test_subprocess_bad_input_and_lazy_imports(tmp_path):
  env = {k: v for k, v in os.environ.items() if k not in ("OVJAX_DEBUG", "TF_CPP_MIN_LOG_LEVEL")}
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  text = tmp_path / "text.wav"
  text.write_text("not audio\n")
  out = tmp_path / "out.wav"
  # -q, so stderr must hold nothing but the error, even after JAX and the checkpoint loaded:
  # no JAX / XLA / absl log noise, no Python warnings.
  proc = subprocess.run(
      [sys.executable, "-m", "ovjax.cli", "-q", "convert", "--checkpoint", str(V2), "--source",
       str(text), "--reference", str(SPEAKER0), "--out", str(out)],
      capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
  assert proc.returncode == 1, proc.stderr
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("ovjax: error:"), proc.stderr
  assert "Traceback" not in proc.stderr and "text.wav" in lines[0]
  assert proc.stdout == "" and not out.exists()
  # `ovjax --help` must not import JAX (it would take seconds).
  check = ("import sys, contextlib, io\nfrom ovjax.cli import main\n"
           "with contextlib.redirect_stdout(io.StringIO()): code = main(['--help'])\n"
           "print(code, 'jax' in sys.modules)")
  proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env,
                        cwd=tmp_path, timeout=60)
  assert proc.stdout.split() == ["0", "False"], proc.stderr
