"""The evaluation harness (`ovjax eval`) on real recordings: speaker similarity tells speakers
apart, MCD-DTW is zero for the same audio and shrugs off a delay, WER/CER count words, items come
from a JSONL or from a folder `ovjax batch` wrote, and the CLI writes its table, JSON and PNGs."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import reference_path
from ovjax import jobs as jobs_lib
from ovjax.audio.io import load_audio
from ovjax.errors import OvjaxError
from ovjax.eval import asr, harness, mcd

RATE = 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  """Two 4 s pieces each of two real speakers, and a delayed copy of one piece."""
  out = tmp_path_factory.mktemp("clips")
  paths = {}
  for name in ("demo_speaker1", "demo_speaker2"):
    wave = load_audio(reference_path("audio", f"{name}.mp3"), RATE)
    for i, start in enumerate((2.0, 12.0)):
      paths[f"{name}_{i}"] = out / f"{name}_{i}.wav"
      sf.write(paths[f"{name}_{i}"], wave[int(start * RATE):int((start + 4) * RATE)], RATE)
  a = sf.read(paths["demo_speaker1_0"], dtype="float32")[0]
  paths["delayed"] = out / "delayed.wav"
  sf.write(paths["delayed"], np.concatenate([np.zeros(int(0.3 * RATE), np.float32), a]), RATE)
  return paths


@pytest.fixture(scope="module")
def report(clips, tmp_path_factory):
  items = [harness.Item("same", output=clips["demo_speaker1_1"], source=clips["demo_speaker2_0"],
                        reference=(clips["demo_speaker1_0"],), target=clips["demo_speaker1_1"]),
           harness.Item("other", output=clips["demo_speaker2_1"],
                        source=clips["demo_speaker1_1"], reference=(clips["demo_speaker1_0"],),
                        target=clips["delayed"]),
           harness.Item("missing", output=clips["demo_speaker1_0"].parent / "nope.wav")]
  return harness.evaluate(items, asr=False, plot_dir=tmp_path_factory.mktemp("plots"))


def test_similarity_tells_speakers_apart(report):
  same, other = report["items"][0], report["items"][1]
  # Two pieces of one speaker are closer than pieces of two speakers, in both directions.
  assert same["sim_output_reference"] > other["sim_output_reference"] + 0.1
  assert same["sim_output_reference"] > same["sim_source_reference"] + 0.1
  assert -1 <= other["sim_output_source"] <= 1
  summary = report["summary"]
  assert summary["sim_output_reference_items"] == 2
  assert summary["sim_gain"] == pytest.approx(np.mean(
      [r["sim_output_reference"] - r["sim_source_reference"] for r in report["items"][:2]]))


def test_a_bad_item_is_reported_and_the_rest_count(report):
  assert report["failed"] == 1 and "not found" in report["items"][2]["error"]
  table = harness.format_table(report)
  assert "not evaluated: missing" in table and table.splitlines()[0].startswith("item")


def test_plots_show_each_item(report):
  for row in report["items"][:2]:
    with open(row["plot"], "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_mcd_is_zero_for_the_same_audio_and_dtw_absorbs_a_delay(clips):
  a = sf.read(clips["demo_speaker1_0"], dtype="float32")[0]
  delayed = sf.read(clips["delayed"], dtype="float32")[0]
  other = sf.read(clips["demo_speaker2_0"], dtype="float32")[0]
  assert mcd.mel_cepstral_distortion(a, a, RATE) == pytest.approx(0.0, abs=1e-9)
  shifted = mcd.mel_cepstral_distortion(a, delayed, RATE)
  across = mcd.mel_cepstral_distortion(a, other, RATE)
  assert shifted < 0.5 * across, (shifted, across)
  # Without the alignment (frame t against frame t), the same delay costs far more.
  ca, cd = mcd.mel_cepstra(a, RATE), mcd.mel_cepstra(delayed, RATE)
  n = min(len(ca), len(cd))
  unaligned = mcd._K * np.mean(np.sqrt(np.sum((ca[:n] - cd[:n])**2, axis=-1)))
  assert unaligned > 2 * shifted, (unaligned, shifted)


def test_error_rates_count_words_and_characters():
  assert asr.error_rates("The cat sat.", "the cat sat") == {"wer": 0.0, "cer": 0.0}
  rates = asr.error_rates("one two three four", "one two four")
  assert rates["wer"] == pytest.approx(0.25)
  with pytest.raises(OvjaxError, match="no words"):
    asr.error_rates("...", "x")


def test_asr_understands_clear_speech(tmp_path):
  """pocketsphinx on Festival's HTS voice (clear English): most words right; on noise: not."""
  text = "the weather is nice today and we will go to the park"
  (tmp_path / "t.txt").write_text(text)
  subprocess.run(["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", str(tmp_path / "t.txt"),
                  "-o", str(tmp_path / "t.wav")], capture_output=True, check=True)
  audio, rate = sf.read(tmp_path / "t.wav", dtype="float32")
  transcriber = asr.Transcriber()
  heard = transcriber(audio, rate)
  assert asr.error_rates(text, heard)["wer"] < 0.3, heard
  noise = 0.1 * np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
  assert asr.error_rates(text, transcriber(noise, rate))["wer"] > 0.7


def test_items_from_a_batch_folder(tmp_path, clips):
  """`ovjax batch`'s report names each job's source, references and text; eval reads them."""
  job = jobs_lib.Job(line=3, kind="convert", id="j1", out="j1.wav", status="done",
                     spec={"source": clips["demo_speaker2_0"],
                           "reference": [clips["demo_speaker1_0"]], "text": "hello there"})
  failed = jobs_lib.Job(line=4, kind="convert", id="j2", out="j2.wav", status="failed",
                        error="x")
  (tmp_path / "report.jsonl").write_text(
      "".join(json.dumps(j.report_entry()) + "\n" for j in (job, failed)))
  (item,) = harness.read_items(tmp_path)
  assert item == harness.Item("j1", output=tmp_path / "j1.wav", source=clips["demo_speaker2_0"],
                              reference=(clips["demo_speaker1_0"],), text="hello there")
  (tmp_path / "empty").mkdir()
  with pytest.raises(OvjaxError, match="no report.jsonl"):
    harness.read_items(tmp_path / "empty")


@pytest.mark.parametrize("line, message", [
    ('{"reference": "a.wav"}', "no 'output'"),
    ('{"output": "a.wav", "colour": 1}', "unknown key 'colour'"),
    ('{"output": "a.wav", "text": 3}', "'text' must be a string"),
    ('not json', "not JSON"),
])
def test_bad_items_files_are_one_line_errors(tmp_path, line, message):
  path = tmp_path / "items.jsonl"
  path.write_text(line + "\n")
  with pytest.raises(OvjaxError, match=message):
    harness.read_items(path)


def test_cli_writes_table_json_and_plots(tmp_path, clips):
  items = tmp_path / "items.jsonl"
  items.write_text(json.dumps({"id": "x", "output": str(clips["demo_speaker1_1"]),
                               "reference": [str(clips["demo_speaker1_0"])],
                               "source": str(clips["demo_speaker2_0"])}) + "\n")
  result = subprocess.run([sys.executable, "-m", "ovjax.cli", "eval", str(items), "--json",
                           str(tmp_path / "r.json"), "--plot", str(tmp_path / "png"), "--no-asr"],
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr
  assert "similarity to the reference:" in result.stdout
  report = json.loads((tmp_path / "r.json").read_text())
  assert report["items"][0]["id"] == "x" and (tmp_path / "png" / "x.png").is_file()
  bad = subprocess.run([sys.executable, "-m", "ovjax.cli", "eval", str(tmp_path / "none.jsonl")],
                       capture_output=True, text=True, timeout=600)
  assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr
