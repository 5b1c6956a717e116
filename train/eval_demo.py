"""Measures a converter the way the demo converter's model card reports it: held-out speech of
seen and unseen speakers, converted into each target voice, scored by the eval harness.

    python train/eval_demo.py --converter ovjax/assets/converter_demo --corpus corpus \\
        --unseen-reference ../shared/reference/audio/example_reference.mp3 --out runs/demo_eval

Sources: Festival voices saying sentences that are not in the training list (so ASR can score
them). Targets, each with disjoint recordings to condition on (the embedding) and to judge by
(similarity): seen real speakers (their training pieces / their held-out piece from
holdout.jsonl), seen synthetic speakers (training utterances / a new sentence), an unseen real
speaker (first / second half of --unseen-reference) and an unseen synthetic one (a Festival
warp outside the corpus' range). Writes OUT/items.jsonl, the audio, and OUT/eval.json: per group
(seen, unseen) the mean similarity to the target before and after, and WER of source and output.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from ovjax.api import ToneColorConverter
from ovjax.audio.io import load_audio, write_wav
from ovjax.data import synth
from ovjax.errors import OvjaxError
from ovjax.eval import harness

NEW_SENTENCES = (
    "The lighthouse keeper painted the railing blue before the storm arrived.",
    "Seven small boats waited in the harbour for the morning tide.",
    "She folded the old map and put it back into the drawer.",
    "Nobody expected the bakery to open so early on a holiday.",
    "A quiet wind moved through the tall grass behind the station.",
)
SOURCES = (("cmu_us_slt_arctic_hts", 1.0), ("ked_diphone", 1.0))
SEEN_SYNTHETIC = ("festival-kal_diphone-w1.14-r1.00",)
UNSEEN_WARP = ("cmu_us_slt_arctic_hts", 1.25)


def _festival(out: Path, name: str, voice: str, warp: float, text: str) -> Path:
  audio, rate = synth.synthesize(synth.festival_speaker(voice, warp, 1.0), text)
  path = out / f"{name}.wav"
  write_wav(path, audio, rate)
  return path


def _targets(corpus: Path, unseen_reference: Path, out: Path, rate: int) -> dict:
  """name -> (group, condition paths, judge paths)."""
  manifest = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
  holdout = [json.loads(line) for line in (corpus / "holdout.jsonl").read_text().splitlines()]
  by_speaker: dict[str, list[Path]] = {}
  for item in manifest:
    by_speaker.setdefault(item["speaker"], []).append(corpus / item["audio"])
  targets = {}
  for item in holdout:  # Real speakers with a held-out piece.
    speaker = item["speaker"]
    targets[speaker] = ("seen", by_speaker[speaker][:3], [corpus / item["audio"]])
  for speaker in SEEN_SYNTHETIC:
    voice, warp = speaker.split("-")[1], float(speaker.split("-w")[1].split("-")[0])
    judge = _festival(out, f"judge-{speaker}", voice, warp, NEW_SENTENCES[4])
    targets[speaker] = ("seen", by_speaker[speaker][:3], [judge])
  wave = load_audio(unseen_reference, rate)
  half = len(wave) // 2
  write_wav(out / "unseen-real-a.wav", wave[:half], rate)
  write_wav(out / "unseen-real-b.wav", wave[half:], rate)
  targets["unseen-real"] = ("unseen", [out / "unseen-real-a.wav"], [out / "unseen-real-b.wav"])
  voice, warp = UNSEEN_WARP
  condition = [_festival(out, f"unseen-synthetic-{i}", voice, warp, NEW_SENTENCES[i])
               for i in range(2, 4)]
  judge = [_festival(out, "unseen-synthetic-judge", voice, warp, NEW_SENTENCES[4])]
  targets["unseen-synthetic"] = ("unseen", condition, judge)
  return targets


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--converter", required=True)
  p.add_argument("--corpus", required=True, help="the `ovjax corpus synth` folder it trained on")
  p.add_argument("--unseen-reference", required=True, help="a recording of an unseen speaker")
  p.add_argument("--out", required=True)
  p.add_argument("--tau", type=float, default=0.3)
  args = p.parse_args(argv)
  out = Path(args.out)
  (out / "audio").mkdir(parents=True, exist_ok=True)
  tcc = ToneColorConverter.from_pretrained(args.converter)
  audio_dir = out / "audio"
  sources = [(f"{voice}-{i}", _festival(audio_dir, f"source-{voice}-{i}", voice, warp,
                                        NEW_SENTENCES[i]), NEW_SENTENCES[i])
             for voice, warp in SOURCES for i in range(2)]
  targets = _targets(Path(args.corpus), Path(args.unseen_reference), audio_dir,
                     tcc.sampling_rate)
  target_ses = dict(zip(targets, tcc.extract_ses([t[1] for t in targets.values()])))
  source_ses = tcc.extract_ses([[path] for _, path, _ in sources], use_vad=False)
  items, groups = [], {}
  for (name, path, text), src_se in zip(sources, source_ses):
    converted = tcc.convert([path] * len(targets), src_se, list(target_ses.values()),
                            tau=args.tau)
    for (target, (group, _, judge)), wave in zip(targets.items(), converted):
      out_path = audio_dir / f"{name}_to_{target}.wav"
      write_wav(out_path, wave, tcc.sampling_rate)
      items.append(harness.Item(f"{name}->{target}", output=out_path, source=path,
                                reference=tuple(judge), text=text))
      groups[items[-1].id] = group
  (out / "items.jsonl").write_text("".join(
      json.dumps({"id": i.id, "output": str(i.output), "source": str(i.source),
                  "reference": [str(r) for r in i.reference], "text": i.text}) + "\n"
      for i in items))
  report = harness.evaluate(items, progress=lambda m: print(m, file=sys.stderr))
  print(harness.format_table(report))
  result = {"converter": str(args.converter), "tau": args.tau}
  for group in ("seen", "unseen"):
    rows = [r for r in report["items"] if groups[r["id"]] == group and "error" not in r]
    summary = harness.summarize(rows)
    summary["wer_ratio"] = (summary["wer_output"] / summary["wer_source"]
                            if summary.get("wer_source") else None)
    summary["items"] = len(rows)
    result[group] = summary
    print(f"{group}: similarity to the target {summary['sim_source_reference']:.3f} -> "
          f"{summary['sim_output_reference']:.3f} ({summary['sim_gain']:+.3f}); "
          f"WER {summary['wer_source']:.3f} -> {summary['wer_output']:.3f}")
  result["items"] = report["items"]
  (out / "eval.json").write_text(json.dumps(result, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main())
  except OvjaxError as e:
    print(f"eval_demo: error: {e}", file=sys.stderr)
    sys.exit(1)
