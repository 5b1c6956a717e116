"""`ovjax eval`: speaker similarity, intelligibility and MCD of converted or cloned speech."""
from __future__ import annotations

import json
from pathlib import Path

from ovjax.cli import common
from ovjax.errors import OvjaxError


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "eval", parents=list(parents), help="measure converted speech: similarity, WER, MCD",
      description="Evaluate outputs against their references and sources: cosine similarity of "
                  "resemblyzer speaker embeddings (output-reference, source-reference, "
                  "output-source), WER/CER of pocketsphinx ASR against the text, and MCD with "
                  "DTW against a ground-truth target. ITEMS is a JSONL file of {\"output\", "
                  "\"reference\" (a path or a list), \"source\", \"text\", \"target\", \"id\"} "
                  "objects (relative paths from the file's folder), or a folder `ovjax batch` "
                  "wrote.",
      epilog="Needs the eval extra (pip install 'ovjax[eval]') and resemblyzer's weights "
             "(pip install --no-deps resemblyzer==0.1.4, or --speaker-weights).")
  p.add_argument("items", metavar="ITEMS", help="items JSONL, or an `ovjax batch` output folder")
  p.add_argument("--json", metavar="REPORT.json", help="also write the report as JSON")
  p.add_argument("--plot", metavar="DIR",
                 help="write a PNG per item into DIR: source, reference and output mel "
                      "spectrograms side by side")
  p.add_argument("--no-asr", action="store_true", help="skip the ASR (WER/CER)")
  p.add_argument("--speaker-weights", metavar="PRETRAINED.pt",
                 help="resemblyzer's pretrained.pt (default: from the installed resemblyzer "
                      "package or the ovjax cache)")
  p.set_defaults(run=run)


def run(args) -> int:
  progress = common.Progress(args)
  out = None if args.json is None else common.check_output_file(args.json, ".json", "--json")
  if args.plot is not None:
    plot = Path(args.plot)
    if plot.exists() and not plot.is_dir():
      raise OvjaxError(f"--plot {plot}: exists and is not a folder")
    common.check_creatable_parent(plot / "x.png", "--plot")
  from ovjax.eval import harness
  from ovjax.fileio import atomic_output
  items = harness.read_items(args.items)
  progress(f"eval: {common.plural(len(items), 'item')}")
  report = harness.evaluate(items, speaker_weights=args.speaker_weights, asr=not args.no_asr,
                            plot_dir=args.plot, progress=progress)
  if not progress.quiet:
    print(harness.format_table(report), flush=True)
  if out is not None:
    with atomic_output(out) as tmp:
      tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
  if report["failed"]:
    raise OvjaxError(f"{common.plural(report['failed'], 'item')} could not be evaluated "
                     "(see the table)")
  return 0
