"""`ovjax corpus synth` (ovjax/data/synth.py): a small corpus of espeak-ng, Festival and real
speakers built once, then checked line by line, file by file and against a second build."""
import json
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from conftest import reference_path
from ovjax.cli import main
from ovjax.data import synth
from ovjax.errors import OvjaxError

SENTENCES = 2
ESPEAK_PITCHES = (20, 50, 80)
FESTIVAL_WARPS = (0.88, 1.0, 1.14)
TRANSCRIPTS = ("the first clip of the second demo speaker", "a second clip of that speaker",
               "and a third one")


def _speakers():
  # Festival first: a missing Festival fails every test here with the packages to install.
  synth.require_festival()
  espeak = [synth.espeak_speaker("en-us", "gmw/en-US", "m3", p, 175) for p in ESPEAK_PITCHES]
  espeak.append(synth.espeak_speaker("en-gb", "gmw/en", "f2", 50, 160))
  festival = [synth.festival_speaker("kal_diphone", w) for w in FESTIVAL_WARPS]
  festival.append(synth.festival_speaker("cmu_us_slt_arctic_hts", 1.0, 1.15))
  return espeak + festival


def _real_folders(root: Path) -> list[Path]:
  """real_txt/alice/: three 3 s clips with transcripts (one speaker, by subfolder);
  real_asr/talk.wav: 14 s of untranscribed speech, to be cut at pauses and transcribed."""
  audio, rate = librosa.load(reference_path("audio", "demo_speaker2.mp3"), sr=None)
  alice = root / "real_txt" / "alice"
  alice.mkdir(parents=True)
  for i, text in enumerate(TRANSCRIPTS):
    sf.write(alice / f"clip{i}.wav", audio[i * 3 * rate:(i + 1) * 3 * rate], rate)
    (alice / f"clip{i}.txt").write_text(text + "\n", encoding="utf-8")
  talk, rate = librosa.load(reference_path("audio", "example_reference.mp3"), sr=None)
  (root / "real_asr").mkdir()
  sf.write(root / "real_asr" / "talk.wav", talk[: 14 * rate], rate)
  return [root / "real_txt", root / "real_asr"]


def _build(out: Path, folders, seed: int = 0):
  recordings = [r for f in folders for r in synth.real_recordings(f)]
  return synth.build_corpus(out, _speakers(), SENTENCES, seed=seed, recordings=recordings,
                            holdout=1, jobs=2)


def _lines(path: Path) -> list[dict]:
  return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
  """Two builds with the same seed: (folder A, folder B, A's summary)."""
  root = tmp_path_factory.mktemp("synth")
  folders = _real_folders(root)
  summary = _build(root / "a", folders)
  _build(root / "b", folders)
  return root / "a", root / "b", summary, folders


def _median_f0(path: Path) -> float:
  audio, rate = sf.read(path, dtype="float32")
  f0 = librosa.yin(audio, fmin=60, fmax=500, sr=rate)
  energy = librosa.feature.rms(y=audio)[0][: len(f0)]
  return float(np.median(f0[energy > 0.1 * energy.max()]))


def test_manifest_lines_and_audio(corpora):
  out, _, summary, _ = corpora
  lines = _lines(out / "manifest.jsonl")
  speakers = json.loads((out / "speakers.json").read_text())
  assert len(speakers) == summary.speakers == 8 + 2
  assert len(lines) == summary.utterances
  rates = {"espeak": 22050, "kal_diphone": 16000, "cmu_us_slt_arctic_hts": 32000, "real": 44100}
  per_speaker = {}
  for line in lines:
    keys = {"audio", "text", "speaker", "language"} | ({"transcript"} if "transcript" in line
                                                       else set())
    assert set(line) == keys
    assert line["audio"].startswith(f"wavs/{line['speaker']}/") and line["audio"].endswith(".wav")
    assert line["text"].strip()
    info = speakers[line["speaker"]]
    assert line["language"] == info["language"]
    audio, rate = sf.read(out / line["audio"], dtype="float32")
    assert sf.info(out / line["audio"]).subtype == "PCM_16"
    source = info["source"]
    assert rate == rates[info["voice"] if source == "festival" else source]
    seconds = len(audio) / rate
    if source == "real" and "transcript" in line:  # cut at pauses
      assert synth.MIN_UTTERANCE_S <= seconds <= synth.MAX_UTTERANCE_S
    else:
      assert 0.7 < seconds < 12
    # Speech, not silence or noise: loud, and mostly speech to webrtcvad.
    assert np.sqrt(np.mean(audio**2)) > 0.01
    from ovjax.audio.vad import speech_regions
    voiced = sum(e - s for s, e in speech_regions(audio, rate))
    assert voiced > 0.5 * len(audio), line["audio"]
    per_speaker[line["speaker"]] = per_speaker.get(line["speaker"], 0) + 1
  for name, info in speakers.items():
    assert info["utterances"] == per_speaker[name]
    if info["source"] != "real":
      assert info["utterances"] == SENTENCES and info["holdout"] == 0
  assert {s["source"] for s in speakers.values()} == {"espeak", "festival", "real"}
  assert speakers["espeak-en-us-m3-p80-s175"]["pitch"] == 80
  assert speakers["festival-kal_diphone-w1.14-r1.00"]["warp"] == 1.14


def test_real_recordings_transcripts_and_asr(corpora):
  out, _, _, _ = corpora
  lines = _lines(out / "manifest.jsonl") + _lines(out / "holdout.jsonl")
  alice = [x for x in lines if x["speaker"] == "real-real_txt-alice"]
  # One speaker for the subfolder; given transcripts are kept as they are, not marked ASR.
  assert sorted(x["text"] for x in alice) == sorted(TRANSCRIPTS)
  assert all("transcript" not in x for x in alice)
  talk = [x for x in lines if x["speaker"] == "real-real_asr-talk"]
  assert len(talk) >= 2 and all(x["transcript"] == "asr" for x in talk)
  words = " ".join(x["text"] for x in talk).split()
  assert len(words) >= 10 and all(w.islower() for w in words)
  # The cuts tile the recording's speech: together nearly all of its 14 s.
  total = sum(sf.info(out / x["audio"]).duration for x in talk)
  assert 10.0 < total <= 14.0


def test_holdout_is_disjoint(corpora):
  out, _, summary, _ = corpora
  train, held = _lines(out / "manifest.jsonl"), _lines(out / "holdout.jsonl")
  assert summary.holdout == len(held) == 2  # one per real speaker
  assert sorted(x["speaker"] for x in held) == ["real-real_asr-talk", "real-real_txt-alice"]
  assert not {x["audio"] for x in train} & {x["audio"] for x in held}
  assert all((out / x["audio"]).is_file() for x in held)
  speakers = json.loads((out / "speakers.json").read_text())
  assert speakers["real-real_txt-alice"]["holdout"] == 1
  assert speakers["real-real_txt-alice"]["utterances"] == 2


def test_speakers_differ_in_pitch(corpora):
  out, _, _, _ = corpora
  lines = _lines(out / "manifest.jsonl")

  def f0(speaker):
    return np.mean([_median_f0(out / x["audio"]) for x in lines if x["speaker"] == speaker])

  espeak = [f0(f"espeak-en-us-m3-p{p}-s175") for p in ESPEAK_PITCHES]
  assert espeak[0] * 1.1 < espeak[1] and espeak[1] * 1.1 < espeak[2], espeak
  # A warp w scales the pitch by w (and the formants with it).
  kal = [f0(f"festival-kal_diphone-w{w:.2f}-r1.00") for w in FESTIVAL_WARPS]
  for w, value in zip(FESTIVAL_WARPS, kal):
    assert value == pytest.approx(kal[1] * w, rel=0.05), kal
  assert f0("festival-cmu_us_slt_arctic_hts-w1.00-r1.15") > 1.4 * kal[1]  # female vs male


def test_same_seed_gives_identical_files(corpora):
  a, b, _, _ = corpora
  files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
  files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
  assert files_a == files_b
  assert len(files_a) > 20
  for rel in files_a:
    assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_other_seed_assigns_other_sentences():
  speakers = _speakers()
  zero = synth.plan_synthetic(speakers, 5, seed=0)
  assert [u.text for u in zero] == [u.text for u in synth.plan_synthetic(speakers, 5, seed=0)]
  one = synth.plan_synthetic(speakers, 5, seed=1)
  assert [u.audio for u in zero] == [u.audio for u in one]
  differ = sum(a.text != b.text for a, b in zip(zero, one))
  assert differ > 0.8 * len(zero)
  # No sentence twice for one speaker while the list lasts.
  for s in speakers:
    texts = [u.text for u in zero if u.speaker == s.name]
    assert len(set(texts)) == len(texts)


def test_resume_redoes_only_the_missing_file(corpora, tmp_path):
  a, _, _, folders = corpora
  out = tmp_path / "resume"
  shutil.copytree(a, out)
  lines = _lines(out / "manifest.jsonl")
  victim = out / next(x["audio"] for x in lines if x["speaker"].startswith("festival-kal"))
  original = victim.read_bytes()
  victim.unlink()
  stamps = {p: p.stat().st_mtime_ns for p in (out / "wavs").rglob("*.wav")}
  summary = _build(out, folders)
  assert summary.made == 1
  assert victim.read_bytes() == original
  for p, stamp in stamps.items():
    assert p.stat().st_mtime_ns == stamp, p
  assert (out / "manifest.jsonl").read_bytes() == (a / "manifest.jsonl").read_bytes()
  # Other options over the same folder are refused rather than mixed in.
  with pytest.raises(OvjaxError, match="other options"):
    _build(out, folders, seed=1)


def test_cli_espeak_corpus(tmp_path, capsys):
  out = tmp_path / "cli"
  argv = ["-q", "corpus", "synth", str(out), "--voices", "espeak", "--max-speakers", "3",
          "--sentences", "2", "--pitches", "30,70", "--speeds", "170"]
  assert main(argv) == 0
  lines = _lines(out / "manifest.jsonl")
  assert len(lines) == 6 and len({x["speaker"] for x in lines}) == 3
  # The most varied first: three different variants before any variant at a second pitch.
  speakers = json.loads((out / "speakers.json").read_text())
  assert len({(s["voice"], s["variant"]) for s in speakers.values()}) == 3
  assert all(s["language"].startswith("en") for s in speakers.values())
  assert not (out / "holdout.jsonl").exists()
  assert main(argv) == 0  # a finished corpus resumes to itself
  assert _lines(out / "manifest.jsonl") == lines
  assert capsys.readouterr().err == ""


@pytest.mark.parametrize("extra, message", [
    (["--sentences", "0"], "--sentences must be >= 1"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--voices", "festival,mbrola"], "--voices: unknown 'mbrola'"),
    (["--languages", "xx"], "no bundled sentences for 'xx'"),
    (["--real", "/nonexistent/recordings"], "--real /nonexistent/recordings: no such folder"),
    (["--holdout", "1"], "--holdout needs --real"),
    (["--pitches", "50,120"], "espeak pitch must be in 0..99, got 120"),
    (["--warps", "fast"], "--warps: not a comma-separated list of numbers"),
    (["--voices", "none"], "nothing to build"),
])
def test_bad_options_fail_in_one_line(tmp_path, capsys, extra, message):
  assert main(["corpus", "synth", str(tmp_path / "out"), "--voices", "espeak"] + extra) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("ovjax: error: ") and message in err, err
  assert not (tmp_path / "out").exists()


def test_refuses_a_file_or_a_foreign_folder(tmp_path, capsys):
  (tmp_path / "file").write_text("x")
  assert main(["corpus", "synth", str(tmp_path / "file")]) == 1
  assert "exists and is not a folder" in capsys.readouterr().err
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "notes.txt").write_text("mine")
  assert main(["corpus", "synth", str(tmp_path / "full"), "--voices", "espeak",
               "--max-speakers", "1", "--sentences", "1"]) == 1
  assert "not empty" in capsys.readouterr().err
  assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["notes.txt"]
