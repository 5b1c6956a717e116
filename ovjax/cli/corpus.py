"""`ovjax corpus synth`: a multi-speaker training corpus from the voices installed offline."""
from __future__ import annotations

from pathlib import Path

from ovjax.cli import common
from ovjax.errors import OvjaxError

_SOURCES = ("festival", "espeak")


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "corpus", parents=list(parents), help="build speech corpora for training",
      description="Build speech corpora in ovjax's training manifest format.")
  commands = p.add_subparsers(title="corpus commands", dest="corpus_command", required=True,
                              metavar="COMMAND")
  s = commands.add_parser(
      "synth", parents=list(parents),
      help="synthesise a multi-speaker corpus with espeak-ng and Festival (+ real recordings)",
      description="Speak bundled sentences with every espeak-ng voice/variant/pitch/speed and "
                  "every Festival voice/warp/rate of the chosen languages (each combination a "
                  "speaker), add folders of real recordings, and write OUT/manifest.jsonl, "
                  "OUT/speakers.json and OUT/wavs/. The same options and seed give the same "
                  "files; a rerun over OUT resumes where the last run stopped.",
      epilog="Debian packages: espeak-ng, festival, festvox-kallpc16k, festvox-kdlpc16k, "
             "festvox-us-slt-hts (more festvox-* voices add speakers of other languages).")
  s.add_argument("out", metavar="OUT", help="output folder (created; resumed if it exists)")
  s.add_argument("--seed", type=int, default=0,
                 help="seed of the speaker choice, sentences and holdout (default: 0)")
  s.add_argument("--sentences", type=int, default=30, metavar="N",
                 help="sentences per synthetic speaker (default: 30)")
  s.add_argument("--voices", default="festival,espeak", metavar="LIST",
                 help="synthetic sources, comma-separated: festival, espeak, or none "
                      "(default: festival,espeak)")
  s.add_argument("--max-speakers", type=int, default=200, metavar="N",
                 help="at most N speakers in all: real ones first, then the sources in turn, "
                      "most varied first (default: 200)")
  s.add_argument("--languages", default="en", metavar="LIST",
                 help="languages, comma-separated base codes with bundled sentences "
                      "(default: en)")
  s.add_argument("--real", action="append", default=[], metavar="DIR",
                 help="a folder of real recordings (audio + same-stem .txt, or a "
                      "manifest.jsonl); untranscribed or long files are cut at pauses and "
                      "transcribed by ASR. Repeatable")
  s.add_argument("--real-language", default="en-us", metavar="LANG",
                 help="espeak-ng language code of the real recordings (default: en-us)")
  s.add_argument("--holdout", type=int, default=0, metavar="N",
                 help="utterances per real speaker written to OUT/holdout.jsonl instead of the "
                      "manifest (default: 0)")
  s.add_argument("--pitches", default="25,50,75", metavar="LIST",
                 help="espeak-ng pitches (-p, 0-99) (default: 25,50,75)")
  s.add_argument("--speeds", default="150,185", metavar="LIST",
                 help="espeak-ng speeds (-s, words per minute) (default: 150,185)")
  s.add_argument("--warps", default="0.88,0.94,1,1.07,1.14", metavar="LIST",
                 help="Festival spectral warps: pitch and formants times w "
                      "(default: 0.88,0.94,1,1.07,1.14)")
  s.add_argument("--rates", default="1,1.15", metavar="LIST",
                 help="Festival speaking rates (default: 1,1.15)")
  s.add_argument("--jobs", type=int, default=2, metavar="N",
                 help="synthesis processes run at once (default: 2)")
  s.set_defaults(run=run)


def _names(text: str, flag: str, allowed=None) -> list[str]:
  items = [t.strip().lower() for t in text.split(",") if t.strip()]
  if not items:
    raise OvjaxError(f"{flag}: empty list")
  if allowed is not None:
    bad = [t for t in items if t not in allowed]
    if bad:
      raise OvjaxError(f"{flag}: unknown {bad[0]!r} (choose from {', '.join(allowed)})")
  return list(dict.fromkeys(items))


def _numbers(text: str, flag: str, kind=float) -> list:
  try:
    values = [kind(t) for t in _names(text, flag)]
  except ValueError:
    raise OvjaxError(f"{flag}: not a comma-separated list of numbers: {text!r}") from None
  return list(dict.fromkeys(values))


def _check_counts(args) -> None:
  for flag, value, low in (("--sentences", args.sentences, 1), ("--max-speakers",
                           args.max_speakers, 1), ("--jobs", args.jobs, 1),
                           ("--holdout", args.holdout, 0)):
    if value < low:
      raise OvjaxError(f"{flag} must be >= {low}, got {value}")
  if args.holdout and not args.real:
    raise OvjaxError("--holdout needs --real (it holds out utterances of real speakers)")


def run(args) -> int:
  progress = common.Progress(args)
  _check_counts(args)
  sources = _names(args.voices, "--voices", _SOURCES + ("none",))
  sources = [s for s in sources if s != "none"]
  pitches = _numbers(args.pitches, "--pitches", int)
  speeds = _numbers(args.speeds, "--speeds", int)
  warps = _numbers(args.warps, "--warps")
  rates = _numbers(args.rates, "--rates")
  out = Path(args.out)
  if out.exists() and not out.is_dir():
    raise OvjaxError(f"{out}: exists and is not a folder")
  common.check_creatable_parent(out / "manifest.jsonl", "OUT")
  for folder in args.real:
    if not Path(folder).is_dir():
      raise OvjaxError(f"--real {folder}: no such folder")
  if not sources and not args.real:
    raise OvjaxError("--voices none and no --real folder: nothing to build")

  from ovjax.data import synth  # Deferred: numpy, soundfile (and librosa when needed).
  languages = _names(args.languages, "--languages")
  bundled = synth.bundled_languages()
  missing = [lang for lang in languages if lang not in bundled]
  if missing:
    raise OvjaxError(f"--languages: no bundled sentences for {missing[0]!r} "
                     f"(bundled: {', '.join(bundled)})")
  groups = []
  if "festival" in sources:
    groups.append(synth.festival_speakers(languages, warps, rates))
  if "espeak" in sources:
    groups.append(synth.espeak_speakers(languages, pitches, speeds))
  for source, group in zip(sources, groups):
    if not group:
      progress(f"no {source} voices for languages {','.join(languages)}")

  recordings = [r for folder in args.real
                for r in synth.real_recordings(folder, args.real_language)]
  real_names = sorted({r.speaker for r in recordings})
  if len(real_names) > args.max_speakers:
    raise OvjaxError(f"--max-speakers {args.max_speakers}: the --real folders alone hold "
                     f"{len(real_names)} speakers")
  speakers = synth.select_speakers(groups, args.max_speakers - len(real_names), args.seed)
  if not speakers and not recordings:
    raise OvjaxError("no voices found for the chosen --voices and --languages")
  summary = synth.build_corpus(out, speakers, args.sentences, seed=args.seed,
                               recordings=recordings, holdout=args.holdout, jobs=args.jobs,
                               progress=progress, bar=not progress.quiet)
  held = f", {summary.holdout} held out" if summary.holdout else ""
  dropped = (f", {summary.dropped} real cuts left out (ASR heard no words)"
             if summary.dropped else "")
  progress(f"wrote {out / 'manifest.jsonl'}: {summary.utterances} utterances{held} of "
           f"{common.plural(summary.speakers, 'speaker')}, {summary.seconds / 3600:.2f} h "
           f"({summary.made} made now{dropped}) in {progress.elapsed:.0f} s")
  return 0
