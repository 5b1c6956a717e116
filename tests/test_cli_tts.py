"""`ovjax tts`, `ovjax clone` and `import-checkpoint` of base speaker folders, in-process through
`main([...])`: parity with the reference base TTS, real recordings as references, espeak-ng as
the base speaker, and one-line failures for every bad input."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ovjax.cli import main

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "reference"
BASE = REF / "openvoice" / "base_v1_small"
CONVERTER = REF / "openvoice" / "converter_v2_small"
SPEAKER0 = REF / "audio" / "demo_speaker0.mp3"
SR = 22050
PAUSE = int(SR * 0.05)  # The silence after every sentence piece, at speed 1.
TEXT = "Hello world, this is a test."  # golden.npz's s0_text without its [EN] marks.
DETERMINISTIC = ("--noise-scale", "0", "--noise-scale-w", "0")


def _run(capsys, *argv):
  """main(argv) -> (exit code, stdout, stderr)."""
  capsys.readouterr()  # Drop anything printed before.
  code = main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


def _read(path):
  audio, sr = sf.read(str(path), dtype="float32")
  assert sr == SR and sf.info(str(path)).subtype == "FLOAT"
  return audio


def _assert_speech(audio):
  assert audio.ndim == 1 and len(audio) > SR // 4
  assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 1e-3


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
  monkeypatch.delenv("OVJAX_DEBUG", raising=False)


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(BASE / "golden.npz"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
  return tmp_path_factory.mktemp("cli_tts")


@pytest.fixture(scope="module")
def target_se(work):
  """A converter-sized [1, 32, 1] embedding, as the reference saves them."""
  path = work / "target_se.npy"
  np.save(path, dict(np.load(CONVERTER / "golden.npz"))["tgt_se"].astype(np.float32))
  return path


@pytest.fixture(scope="module")
def base_folders(work):
  """The official base folder with a tone-colour file for style "default" beside the weights (as
  official v1 folders ship en_default_se.pth), and its import by the CLI."""
  official = work / "base_official"
  official.mkdir()
  for name in ("config.json", "checkpoint.pth"):
    shutil.copy(BASE / name, official / name)
  se = dict(np.load(CONVERTER / "golden.npz"))["src_se"].astype(np.float32)
  np.save(official / "en_default_se.npy", se)
  imported = work / "base_imported"
  assert main(["-q", "import-checkpoint", str(official), str(imported)]) == 0
  return official, imported


@pytest.fixture(scope="module")
def default_audio(work):
  """`tts` of TEXT at the golden settings (noise 0, sdp-ratio 0.2, speed 1, style default)."""
  out = work / "default.wav"
  assert main(["-q", "tts", "--checkpoint", str(BASE), "--text", TEXT, *DETERMINISTIC,
               "--out", str(out)]) == 0
  return _read(out)


def _assert_clean_failure(code, err, out_path=None):
  lines = err.splitlines()
  assert code == 1, err
  assert len(lines) == 1 and lines[0].startswith("ovjax: error:"), err
  assert "Traceback" not in err
  if out_path is not None:
    assert not Path(out_path).exists()
    if Path(out_path).parent.is_dir():  # No temp file left behind either.
      assert not [p for p in Path(out_path).parent.iterdir() if p.name.endswith(".tmp")]


# -- tts: parity with the reference ------------------------------------------------------------


def _assert_golden(audio, golden):
  want = golden["s0_audio"]
  assert golden["s0_text"] == f"[EN]{TEXT}[EN]" and int(golden["s0_sid"]) == 1
  # One piece, then its 50 ms pause: exactly that many zeros, the piece's last sample is not one.
  assert audio.shape == (len(want) + PAUSE,)
  assert np.max(np.abs(audio[:len(want)] - want)) < 1e-4
  assert np.all(audio[-PAUSE:] == 0) and audio[-PAUSE - 1] != 0


def test_tts_matches_reference(default_audio, golden):
  _assert_golden(default_audio, golden)


def test_tts_imported_folder_matches_reference(base_folders, golden, capsys, tmp_path):
  out = tmp_path / "imported.wav"
  code, _, err = _run(capsys, "tts", "--checkpoint", base_folders[1], "--text", TEXT,
                      *DETERMINISTIC, "--sdp-ratio", "0.2", "--speed", "1", "--style", "default",
                      "--out", out)
  assert code == 0, err
  _assert_golden(_read(out), golden)
  lines = err.splitlines()
  assert lines[0] == f"loading base speaker {base_folders[1]}"
  assert lines[1] == "synthesising 1 piece (English, style default, speed 1)"
  assert lines[2].startswith(f"wrote {out} (1.3 s of audio in ") and len(lines) == 3


def test_tts_bfloat16_is_the_golden_speech_to_bfloat16_accuracy(default_audio, golden, capsys,
                                                                 tmp_path):
  """`tts --dtype bfloat16`: the golden's length to the sample (durations stay float32), its
  samples within bfloat16's accuracy (>= 30 dB SNR) but not float32's; a bad dtype is usage."""
  out = tmp_path / "bf16.wav"
  code, _, err = _run(capsys, "-q", "tts", "--checkpoint", BASE, "--text", TEXT,
                      *DETERMINISTIC, "--dtype", "bfloat16", "--out", out)
  assert code == 0 and err == "", err
  audio = _read(out)
  assert audio.shape == default_audio.shape and np.all(audio[-PAUSE:] == 0)
  want = golden["s0_audio"]
  error = audio[:len(want)] - want
  assert 10 * np.log10(np.sum(want**2) / np.sum(error**2)) >= 30
  assert np.max(np.abs(error)) > 1e-4  # It did run in bfloat16.
  code, _, err = _run(capsys, "tts", "--checkpoint", BASE, "--text", TEXT, "--dtype", "float16",
                      "--out", tmp_path / "x.wav")
  assert code == 2 and "--dtype" in err and not (tmp_path / "x.wav").exists()


def test_import_base_folder(base_folders, capsys, tmp_path):
  official, imported = base_folders
  assert sorted(p.name for p in imported.iterdir()) == [
      "config.json", "en_default_se.npy", "ovjax.json", "params"]
  assert json.loads((imported / "ovjax.json").read_text())["model"] == "base_tts"
  # The pristine reference folder (no embedding files) imports too; summary on stdout.
  code, out, err = _run(capsys, "import-checkpoint", BASE, tmp_path / "again")
  assert code == 0, err
  assert "base speaker TTS (9 styles)" in out and len(out.splitlines()) == 1
  assert "tone-colour" not in out


# -- tts: options --------------------------------------------------------------------------------


def test_tts_speed_style_and_text_file(default_audio, capsys, tmp_path):
  fast, sad, from_file = tmp_path / "fast.wav", tmp_path / "sad.wav", tmp_path / "file.wav"
  argv = ["-q", "tts", "--checkpoint", BASE, *DETERMINISTIC]
  assert _run(capsys, *argv, "--text", TEXT, "--speed", "2", "--out", fast)[0] == 0
  fast = _read(fast)
  assert len(fast) < 0.7 * len(default_audio)
  assert np.all(fast[-int(SR * 0.05 / 2):] == 0)  # The pause is divided by the speed too.
  assert _run(capsys, *argv, "--text", TEXT, "--style", "sad", "--out", sad)[0] == 0
  sad = _read(sad)
  n = min(len(sad), len(default_audio))
  assert not np.allclose(sad[:n], default_audio[:n], atol=1e-3)
  # A UTF-8 file (with the BOM some editors write, and a trailing newline) reads as --text.
  text_file = tmp_path / "text.txt"
  text_file.write_bytes(b"\xef\xbb\xbf" + f"{TEXT}\n".encode("utf-8"))
  code, _, err = _run(capsys, *argv, "--text-file", text_file, "--out", from_file)
  assert code == 0 and err == ""
  np.testing.assert_array_equal(_read(from_file), default_audio)


def test_tts_chinese(capsys, tmp_path):
  out = tmp_path / "zh.wav"
  code, _, err = _run(capsys, "tts", "--checkpoint", BASE, "--language", "Chinese", "--text",
                      "你好，世界。", "--seed", "3", "--out", out)
  assert code == 0, err
  assert "(Chinese, style default, speed 1)" in err
  audio = _read(out)
  _assert_speech(audio)
  assert np.all(audio[-PAUSE:] == 0)


# -- clone ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("base,text,status", [
    ("folder", TEXT, "extracting the base speaker's tone colour"),
    ("espeak", TEXT, "base speaker: espeak-ng voice en-us"),
    ("espeak:fr", "Bonjour tout le monde.", "base speaker: espeak-ng voice fr-fr"),
], ids=["folder", "espeak", "espeak-fr"])
def test_clone_with_reference(base, text, status, capsys, tmp_path):
  out = tmp_path / "clone.wav"
  code, _, err = _run(capsys, "clone", "--converter", CONVERTER,
                      "--base", BASE if base == "folder" else base, "--reference", SPEAKER0,
                      "--text", text, "--out", out)
  assert code == 0, err
  for line in (status, "extracting target tone colour from 1 reference", "converting",
               f"wrote {out} ("):
    assert line in err, err
  _assert_speech(_read(out))


def test_clone_with_target_se_and_base_tone_colour_file(base_folders, target_se, capsys,
                                                        tmp_path):
  out = tmp_path / "clone.wav"
  code, _, err = _run(capsys, "clone", "--converter", CONVERTER, "--base", base_folders[1],
                      "--target-se", target_se, "--text", TEXT, "--tau", "0", "--out", out)
  assert code == 0, err
  # Neither embedding is extracted: the target is given, the source is the folder's file.
  assert f"source tone colour: {base_folders[1] / 'en_default_se.npy'}" in err
  assert "extracting" not in err
  _assert_speech(_read(out))


# -- bad input -----------------------------------------------------------------------------------


def _no_symbols_base(root):
  folder = root / "no_symbols"
  folder.mkdir()
  config = json.loads((BASE / "config.json").read_text())
  del config["symbols"]
  (folder / "config.json").write_text(json.dumps(config))
  shutil.copy(BASE / "checkpoint.pth", folder / "checkpoint.pth")
  return folder


def _bad_case(name, root, target_se):
  """(argv, expected text of the error, whether it fails before any model loads)."""
  out = root / "out" / "x.wav"
  tts = ["tts", "--checkpoint", BASE, "--out", out]
  clone = ["clone", "--converter", CONVERTER, "--target-se", target_se, "--out", out]
  cases = {
      "empty_text": (tts + ["--text", ""], "empty text", True),
      "whitespace_text": (tts + ["--text", " \n\t "], "empty text", True),
      "unspeakable_text": (tts + ["--text", "... !!"], "nothing speakable", False),
      "unknown_style": (tts + ["--text", TEXT, "--style", "singing"],
                        "unknown style 'singing'; this model has: default, whispering,", False),
      "unknown_language": (tts + ["--text", TEXT, "--language", "Klingon"], "Klingon", False),
      # Known to espeak-ng but not to this model's front end: not "nothing speakable".
      "language_of_other_front_end": (tts + ["--text", TEXT, "--language", "French"],
                                      "English and Chinese only", False),
      "missing_text_file": (tts + ["--text-file", root / "nope.txt"], "no such file", True),
      "text_file_not_utf8": (tts + ["--text-file", root / "latin1.txt"], "not UTF-8", True),
      "empty_text_file": (tts + ["--text-file", root / "empty.txt"], "empty text", True),
      "converter_as_checkpoint": (["tts", "--checkpoint", CONVERTER, "--text", TEXT,
                                   "--out", out], "converter folder, not a base speaker", False),
      "base_without_symbols": (["tts", "--checkpoint", root / "no_symbols", "--text", TEXT,
                                "--out", out], "no_symbols/config.json: a base speaker config "
                                "needs a 'symbols' list", False),
      "base_as_converter": (["clone", "--converter", BASE, "--base", "espeak", "--target-se",
                             target_se, "--text", TEXT, "--out", out],
                            "base speaker TTS folder, not a tone-colour converter", False),
      "clone_unknown_style": (clone + ["--base", BASE, "--style", "singing", "--text", TEXT],
                              "unknown style", False),
      "espeak_unknown_voice": (clone + ["--base", "espeak:xx-nonexistent", "--text", TEXT],
                               "no voice 'xx-nonexistent'", False),
      "espeak_with_style": (clone + ["--base", "espeak", "--style", "sad", "--text", TEXT],
                            "no styles", True),
      # espeak-ng would read it out as "ellipsis exclamation".
      "espeak_unspeakable_text": (clone + ["--base", "espeak", "--text", "... !!"],
                                  "nothing speakable", False),
      "missing_reference": (["clone", "--converter", CONVERTER, "--base", "espeak",
                             "--reference", root / "nope.wav", "--text", TEXT, "--out", out],
                            "nope.wav", True),
      "out_not_wav": (tts[:-1] + [root / "out" / "x.mp3", "--text", TEXT], ".wav", True),
  }
  (root / "latin1.txt").write_bytes("Voilà un café.".encode("latin-1"))
  (root / "empty.txt").write_text("\n")
  if name == "base_without_symbols":
    _no_symbols_base(root)
  return cases[name]


BAD_CASES = ["empty_text", "whitespace_text", "unspeakable_text", "unknown_style",
             "unknown_language", "language_of_other_front_end", "missing_text_file",
             "text_file_not_utf8", "empty_text_file", "converter_as_checkpoint",
             "base_without_symbols", "base_as_converter", "clone_unknown_style",
             "espeak_unknown_voice", "espeak_with_style", "espeak_unspeakable_text",
             "missing_reference", "out_not_wav"]


@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_input_fails_cleanly(name, target_se, capsys, tmp_path):
  argv, expected, early = _bad_case(name, tmp_path, target_se)
  # Checks that need no model run without -q: no "loading ..." line may come before the error.
  code, stdout, err = _run(capsys, *([] if early else ["-q"]), *argv)
  _assert_clean_failure(code, err, tmp_path / "out" / "x.wav")
  assert expected in err, err
  assert stdout == "" and not (tmp_path / "out").exists()  # Not even the output's folder.


def test_out_of_range_numbers_are_usage_errors(target_se, capsys, tmp_path):
  out = tmp_path / "x.wav"
  tts = ["tts", "--checkpoint", BASE, "--text", TEXT, "--out", out]
  clone = ["clone", "--converter", CONVERTER, "--base", "espeak", "--target-se", target_se,
           "--text", TEXT, "--out", out]
  for argv in (tts + ["--speed", "0"], tts + ["--speed", "-1"], tts + ["--speed", "inf"],
               tts + ["--noise-scale", "-0.1"], tts + ["--noise-scale-w", "nan"],
               tts + ["--sdp-ratio", "1.5"], tts + ["--seed", "1.5"], clone + ["--tau", "-1"],
               clone + ["--speed", "0"], tts + ["--text-file", "t.txt"],  # --text and a file
               ["tts", "--checkpoint", BASE, "--out", out],  # no text
               ["clone", "--converter", CONVERTER, "--base", "espeak", "--text", TEXT,
                "--out", out]):  # no target
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "usage:" in err and "Traceback" not in err, argv
    assert not out.exists()
  code, _, err = _run(capsys, *tts + ["--speed", "0"])
  assert "argument --speed: must be a finite number > 0, got 0" in err


def test_help_lists_the_new_commands(capsys):
  code, out, _ = _run(capsys, "--help")
  assert code == 0 and " tts " in out and " clone " in out
