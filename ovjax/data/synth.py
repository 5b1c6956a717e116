"""A multi-speaker speech corpus from the voices this machine has offline (`ovjax corpus synth`).

Speakers come from three sources:
* espeak-ng: every voice of the chosen languages x every usable variant (`en-us+m3`, `en+f2`,
  ...) x a few pitches (`-p`) x speeds (`-s`); each combination is a speaker.
* Festival: the installed `festvox-*` voices x spectral warps x speaking rates. A warp w plays
  the synthetic speech w times faster and then restores its duration, which moves the pitch and
  every formant by the factor w: a shorter or longer vocal tract, i.e. another timbre.
* Real recordings (`real_recordings`): audio files with a same-stem `.txt` transcript, or a
  `manifest.jsonl`; long or untranscribed files are cut at pauses into 2-10 s utterances and
  transcribed with pocketsphinx (marked `"transcript": "asr"`).

Output folder:
* `wavs/<speaker>/<speaker>-<n>.wav`: 16-bit PCM at the voice's native rate.
* `manifest.jsonl`: `{"audio", "text", "speaker", "language"}` per utterance (audio relative to the
  folder), readable by `ovjax.data.corpus.manifest_items`; `holdout.jsonl` the same for the
  utterances held out of training; `speakers.json` one entry per speaker.
* `synth_config.json`: what was asked for. A rerun with the same request resumes (finished
  utterances are kept: every file is written atomically, so one that exists is complete); a
  different request over the same folder is refused.

Determinism: the plan (speakers, sentences, holdout) is a function of the request and the seed.
espeak-ng 1.51 and Festival 2.5 (diphone, clunits and HTS voices) write byte-identical audio for
the same input on every run, checked in tests/test_synth.py; so does pocketsphinx.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import soundfile as sf

from ovjax.errors import AudioError, OvjaxError
from ovjax.eval.asr import Transcriber
from ovjax.fileio import atomic_output

SOURCES = ("festival", "espeak")
CONFIG_NAME = "synth_config.json"
FORMAT_VERSION = 1

# Engine defaults: three pitches (espeak's -p, 0-99, default 50) and two rates (-s, words per
# minute, default 175) per voice and variant.
ESPEAK_PITCHES = (25, 50, 75)
ESPEAK_SPEEDS = (150, 185)
# Festival: +-14 % covers roughly the vocal-tract length spread within one sex; rates x1, x1.15.
FESTIVAL_WARPS = (0.88, 0.94, 1.0, 1.07, 1.14)
FESTIVAL_RATES = (1.0, 1.15)

# espeak-ng variants that are not a speaking voice: no voicing (whispers, caleb), effects that
# ring or repeat (echo gain >= 500: the robots, announcer, Demonic, RicishayMax*), or the
# default voice under a test name (fast).
EXCLUDED_VARIANTS = frozenset({
    "whisper", "whisperf", "caleb", "fast", "Demonic", "announcer", "UniRobot", "anikaRobot",
    "RicishayMax", "RicishayMax2", "RicishayMax3", "robosoft", "robosoft2", "robosoft3",
    "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8"})


@dataclasses.dataclass(frozen=True)
class FestivalVoice:
  """What ovjax knows of a Festival voice: its language, engine kind, text encoding, package."""
  language: str  # espeak-ng language code
  kind: str  # "diphone", "clunits" or "hts": decides how the speaking rate is set
  encoding: str  # what its lexicon reads: Festival has no UTF-8 for most languages
  package: str


FESTIVAL_VOICES = {
    "kal_diphone": FestivalVoice("en-us", "diphone", "latin-1", "festvox-kallpc16k"),
    "ked_diphone": FestivalVoice("en-us", "diphone", "latin-1", "festvox-kdlpc16k"),
    "cmu_us_slt_arctic_hts": FestivalVoice("en-us", "hts", "latin-1", "festvox-us-slt-hts"),
    "pc_diphone": FestivalVoice("it", "diphone", "latin-1", "festvox-itapc16k"),
    "lp_diphone": FestivalVoice("it", "diphone", "latin-1", "festvox-italp16k"),
    "czech_dita": FestivalVoice("cs", "diphone", "iso-8859-2", "festvox-czech-dita"),
    "czech_krb": FestivalVoice("cs", "diphone", "iso-8859-2", "festvox-czech-krb"),
    "czech_machac": FestivalVoice("cs", "diphone", "iso-8859-2", "festvox-czech-machac"),
    "czech_ph": FestivalVoice("cs", "diphone", "iso-8859-2", "festvox-czech-ph"),
    "suo_fi_lj_diphone": FestivalVoice("fi", "diphone", "latin-1", "festvox-suopuhe-lj"),
    "hy_fi_mv_diphone": FestivalVoice("fi", "diphone", "latin-1", "festvox-suopuhe-mv"),
    "msu_ru_nsh_clunits": FestivalVoice("ru", "clunits", "utf-8", "festvox-ru"),
    "upc_ca_ona_hts": FestivalVoice("ca", "hts", "latin-1", "festvox-ca-ona-hts"),
}
FESTIVAL_ENGLISH_PACKAGES = ("festival", "festvox-kallpc16k", "festvox-kdlpc16k",
                             "festvox-us-slt-hts")

# Real recordings.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
MIN_UTTERANCE_S = 2.0
MAX_UTTERANCE_S = 10.0
# Phrases are joined up to about this length: a sentence or two, like a read-speech corpus.
TARGET_UTTERANCE_S = 4.0
# A transcribed file up to this long is one utterance (its transcript cannot be split without an
# aligner); longer ones are cut at pauses and transcribed by ASR like untranscribed ones.
MAX_TRANSCRIBED_S = 20.0

# Synthetic audio: edge silence beyond this is trimmed (the engines pad up to ~0.5 s).
_EDGE_SILENCE_S = 0.15
_SILENCE_DB = -50.0  # below the peak; frames quieter than this are silence
_ENGINE_TIMEOUT_S = 120


# -- speakers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Speaker:
  """One speaker of the corpus and how to make its speech.

  source "espeak": `voice` is the espeak-ng voice file id (`gmw/en-US`), `variant` a variant id
  (`m3`, "" for none), `pitch` its -p, `speed` its -s (words per minute).
  source "festival": `voice` a Festival voice name, `speed` a rate factor (1.15 = 15 % faster),
  `warp` the spectral warp. source "real": `voice` the recordings folder, `variant` the file stem
  or subfolder the speaker's recordings share.
  """
  name: str
  source: str
  voice: str
  variant: str
  language: str  # espeak-ng language code, as written in the manifest
  pitch: int | None = None
  speed: float | None = None
  warp: float = 1.0

  @property
  def sentence_language(self) -> str:
    return self.language.split("-")[0]


def _slug(text: str) -> str:
  """A file- and speaker-name-safe form of `text`."""
  slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
  return slug or "x"


def _wants(language: str, languages: Sequence[str]) -> bool:
  base = language.lower().split("-")[0]
  return base in languages or language.lower() in languages


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
  try:
    done = subprocess.run(cmd, capture_output=True, timeout=_ENGINE_TIMEOUT_S, check=False)
  except FileNotFoundError:
    raise OvjaxError(f"{cmd[0]} not found: {what}") from None
  except subprocess.TimeoutExpired:
    raise OvjaxError(f"{cmd[0]} ran over {_ENGINE_TIMEOUT_S} s ({what})") from None
  return done


def _first_line(data: bytes) -> str:
  lines = data.decode("utf-8", "replace").strip().splitlines()
  return lines[0] if lines else ""


def require_espeak() -> None:
  if shutil.which("espeak-ng") is None:
    raise OvjaxError("espeak-ng not found: install the Debian package espeak-ng")


def espeak_voices(languages: Sequence[str]) -> list[tuple[str, str]]:
  """(language code, voice file id) of the installed espeak-ng voices of `languages` (base codes
  such as "en", or full codes), mbrola voices left out (they need separate databases)."""
  require_espeak()
  done = _run(["espeak-ng", "--voices"], "install the Debian package espeak-ng")
  seen, out = set(), []
  for line in done.stdout.decode("utf-8", "replace").splitlines()[1:]:
    fields = line.split()
    if len(fields) < 5 or fields[4].startswith("mb/"):
      continue
    language, voice = fields[1], fields[4]
    if _wants(language, languages) and language not in seen:  # first = highest priority
      seen.add(language)
      out.append((language, voice))
  return sorted(out)


def espeak_variants() -> list[str]:
  """Usable espeak-ng variant ids (the file names of `espeak-ng --voices=variant`)."""
  require_espeak()
  done = _run(["espeak-ng", "--voices=variant"], "install the Debian package espeak-ng")
  names = set()
  for line in done.stdout.decode("utf-8", "replace").splitlines()[1:]:
    fields = line.split()
    if len(fields) >= 5 and fields[4].startswith("!v/"):
      names.add(fields[4][3:])
  return sorted(names - EXCLUDED_VARIANTS)


def _check_range(values: Iterable[float], low: float, high: float, what: str) -> None:
  for v in values:
    if not low <= v <= high:
      raise OvjaxError(f"{what} must be in {low:g}..{high:g}, got {v:g}")


def espeak_speaker(language: str, voice: str, variant: str, pitch: int, speed: int) -> Speaker:
  """The espeak-ng speaker `voice+variant` at pitch `pitch` (0-99) and `speed` words/minute."""
  _check_range([pitch], 0, 99, "espeak pitch")
  _check_range([speed], 80, 450, "espeak speed (words per minute)")
  name = f"espeak-{language}-{_slug(variant) if variant else 'base'}-p{int(pitch)}-s{int(speed)}"
  return Speaker(name, "espeak", voice, variant, language.lower(), int(pitch), int(speed))


def espeak_speakers(languages: Sequence[str], pitches: Sequence[int] = ESPEAK_PITCHES,
                    speeds: Sequence[int] = ESPEAK_SPEEDS) -> list[Speaker]:
  """Every espeak-ng voice of `languages` x variant (and no variant) x pitch x speed."""
  _check_range(pitches, 0, 99, "espeak pitch")
  _check_range(speeds, 80, 450, "espeak speed (words per minute)")
  variants = [""] + espeak_variants()
  return [espeak_speaker(language, voice, variant, p, s)
          for language, voice in espeak_voices(languages)
          for variant in variants for p in pitches for s in speeds]


def require_festival() -> None:
  """Raise (naming the Debian packages) when Festival's text2wave is not installed."""
  if shutil.which("text2wave") is None or shutil.which("festival") is None:
    raise OvjaxError("Festival not found (text2wave): install the Debian packages "
                     + " ".join(FESTIVAL_ENGLISH_PACKAGES))


def festival_voices(languages: Sequence[str]) -> list[str]:
  """Installed Festival voices that ovjax knows (`FESTIVAL_VOICES`), of `languages`."""
  require_festival()
  done = _run(["festival", "-b", "(print (voice.list))"], "install the Debian package festival")
  installed = set(re.findall(r"[A-Za-z0-9_]+", done.stdout.decode("utf-8", "replace")))
  return sorted(v for v, info in FESTIVAL_VOICES.items()
                if v in installed and _wants(info.language, languages))


def festival_speaker(voice: str, warp: float = 1.0, rate: float = 1.0) -> Speaker:
  """The Festival voice `voice`, spectrally warped by `warp`, speaking `rate` times faster."""
  if voice not in FESTIVAL_VOICES:
    raise OvjaxError(f"unknown Festival voice {voice!r} (known: {', '.join(FESTIVAL_VOICES)})")
  _check_range([warp], 0.7, 1.4, "Festival warp")
  _check_range([rate], 0.5, 2.0, "Festival rate")
  if FESTIVAL_VOICES[voice].kind == "clunits":
    rate = 1.0  # unit selection keeps recorded durations: no rate control.
  name = f"festival-{voice}-w{warp:.2f}-r{rate:.2f}"
  return Speaker(name, "festival", voice, "", FESTIVAL_VOICES[voice].language, None,
                 float(rate), float(warp))


def festival_speakers(languages: Sequence[str], warps: Sequence[float] = FESTIVAL_WARPS,
                      rates: Sequence[float] = FESTIVAL_RATES) -> list[Speaker]:
  """Every installed Festival voice of `languages` x warp x rate (duplicates dropped)."""
  _check_range(warps, 0.7, 1.4, "Festival warp")
  _check_range(rates, 0.5, 2.0, "Festival rate")
  out = {}
  for voice in festival_voices(languages):
    for w in warps:
      for r in rates:
        s = festival_speaker(voice, w, r)
        out[s.name] = s
  return list(out.values())


def _stable_int(*parts) -> int:
  digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "little")


def diverse_order(speakers: Sequence[Speaker], seed: int) -> list[Speaker]:
  """`speakers` shuffled by `seed`, then stably sorted so every voice/variant comes once before
  any comes twice: the first N of the list are as varied as N speakers can be."""
  rng = np.random.default_rng(_stable_int("order", seed))
  shuffled = [speakers[i] for i in rng.permutation(len(speakers))]
  seen: dict[tuple[str, str], int] = {}
  ranks = []
  for s in shuffled:
    key = (s.voice, s.variant)
    ranks.append(seen.get(key, 0))
    seen[key] = ranks[-1] + 1
  order = sorted(range(len(shuffled)), key=lambda i: ranks[i])
  return [shuffled[i] for i in order]


def select_speakers(groups: Sequence[Sequence[Speaker]], max_speakers: int | None,
                    seed: int) -> list[Speaker]:
  """Up to `max_speakers` speakers, taken round-robin from the diverse order of each group."""
  queues = [diverse_order(g, seed) for g in groups if g]
  out: list[Speaker] = []
  limit = math.inf if max_speakers is None else max_speakers
  while len(out) < limit and any(queues):
    for q in queues:
      if q and len(out) < limit:
        out.append(q.pop(0))
  return out


# -- sentences --------------------------------------------------------------------------------


def bundled_languages() -> list[str]:
  """Base language codes with a bundled sentence list (`sentences_<code>.txt`)."""
  names = (p.name for p in resources.files("ovjax.data").iterdir())
  return sorted(m.group(1) for n in names if (m := re.fullmatch(r"sentences_(\w+)\.txt", n)))


def load_sentences(language: str) -> list[str]:
  """The bundled sentences of `language` (a base code: "en"), comments and blank lines left out."""
  base = language.lower().split("-")[0]
  path = resources.files("ovjax.data") / f"sentences_{base}.txt"
  if not path.is_file():
    raise OvjaxError(f"no bundled sentences for language {language!r} "
                     f"(bundled: {', '.join(bundled_languages())})")
  lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
  return [line for line in lines if line and not line.startswith("#")]


def assign_sentences(speaker: str, sentences: Sequence[str], n: int, seed: int) -> list[str]:
  """`n` sentences for `speaker`, drawn by `seed` without repeats until the list runs out."""
  rng = np.random.default_rng(_stable_int("sentences", seed, speaker))
  picks: list[str] = []
  while len(picks) < n:
    picks.extend(sentences[i] for i in rng.permutation(len(sentences)))
  return picks[:n]


# -- synthesis --------------------------------------------------------------------------------


def _festival_eval(speaker: Speaker) -> str:
  """Scheme run before synthesis: the voice, then its rate. Only our own numbers go in here;
  the text travels in a file."""
  info = FESTIVAL_VOICES[speaker.voice]
  # After the warp the speech is `warp` times faster, so synthesise `warp / rate` times slower.
  stretch = speaker.warp / speaker.speed
  expr = f"(voice_{speaker.voice})"
  if info.kind == "diphone":
    expr += (f" (Parameter.set 'Duration_Stretch "
             f"(* {stretch:.6f} (or (Parameter.get 'Duration_Stretch) 1.0)))")
  elif info.kind == "hts":  # hts_engine ignores Duration_Stretch; its -r is a speed factor.
    expr += f" (set! hts_engine_params (append hts_engine_params '((\"-r\" {1 / stretch:.6f}))))"
  return f"(begin {expr})"


def _engine_command(speaker: Speaker, text_file: Path, wav_file: Path) -> list[str]:
  if speaker.source == "espeak":
    voice = f"{speaker.voice}+{speaker.variant}" if speaker.variant else speaker.voice
    # -b 1: the text file is UTF-8 (not the locale's encoding); no -m, so no SSML either.
    return ["espeak-ng", "-b", "1", "-v", voice, "-p", str(speaker.pitch), "-s",
            str(int(speaker.speed)), "-f", str(text_file), "-w", str(wav_file)]
  return ["text2wave", "-eval", _festival_eval(speaker), "-o", str(wav_file), str(text_file)]


def warp_spectrum(audio: np.ndarray, sample_rate: int, warp: float) -> np.ndarray:
  """Scale every frequency (pitch and formants) by `warp`, shortening the audio by 1/warp."""
  if warp == 1.0:
    return audio
  import librosa  # Deferred: only warped voices need it.
  out = librosa.resample(audio, orig_sr=sample_rate * warp, target_sr=sample_rate,
                         res_type="soxr_hq")
  return np.asarray(out, dtype=np.float32)


def trim_edges(audio: np.ndarray, sample_rate: int, keep_s: float = _EDGE_SILENCE_S) -> np.ndarray:
  """Cut leading/trailing silence (frames 50 dB under the peak) down to `keep_s` seconds."""
  frame = max(1, sample_rate // 100)
  n = len(audio) // frame
  if n == 0:
    return audio
  energy = np.mean(audio[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
  db = 10 * np.log10(energy + 1e-20)
  loud = np.flatnonzero(db > db.max() + _SILENCE_DB)
  keep = int(round(keep_s * sample_rate))
  start = max(0, loud[0] * frame - keep)
  end = min(len(audio), (loud[-1] + 1) * frame + keep)
  return audio[start:end]


def synthesize(speaker: Speaker, text: str) -> tuple[np.ndarray, int]:
  """`text` spoken by a synthetic `speaker`: (float32 mono audio, its native sample rate).

  The text goes to the engine in a file (never through a shell or the command line).
  """
  if speaker.source not in SOURCES:
    raise OvjaxError(f"{speaker.name}: not a synthetic speaker (source {speaker.source!r})")
  with tempfile.TemporaryDirectory(prefix="ovjax-synth-") as tmp:
    text_file, wav_file = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
    encoding = "utf-8"
    if speaker.source == "festival":
      encoding = FESTIVAL_VOICES[speaker.voice].encoding
    try:
      text_file.write_bytes(text.encode(encoding))
    except UnicodeEncodeError:
      raise OvjaxError(f"{speaker.name}: the text cannot be written in {encoding}, which "
                       f"{speaker.voice} reads: {text!r}") from None
    done = _run(_engine_command(speaker, text_file, wav_file),
                "install the Debian package espeak-ng" if speaker.source == "espeak"
                else "install the Debian package festival")
    stderr = done.stderr.decode("utf-8", "replace")
    # text2wave exits 0 even on Scheme errors (an unknown voice falls back to the default one).
    if done.returncode != 0 or "SIOD ERROR" in stderr:
      reason = next((line for line in stderr.splitlines() if "SIOD ERROR" in line),
                    _first_line(done.stderr)) or "no message"
      raise OvjaxError(f"{speaker.name}: {done.args[0]} failed (exit {done.returncode}): "
                       f"{reason.strip()}")
    try:
      audio, rate = sf.read(str(wav_file), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
      raise OvjaxError(f"{speaker.name}: the engine wrote no readable audio ({e})") from None
  audio = np.ascontiguousarray(audio.mean(axis=1), dtype=np.float32)
  audio = warp_spectrum(audio, int(rate), speaker.warp)
  if audio.size == 0 or float(np.max(np.abs(audio))) < 1e-3:
    raise AudioError(f"{speaker.name}: the engine produced silence for {text!r}")
  return trim_edges(audio, int(rate)), int(rate)


def write_pcm16(path: Path, audio: np.ndarray, sample_rate: int) -> None:
  """16-bit PCM WAV, written atomically (a file at `path` is always complete)."""
  pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype("<i2")
  with atomic_output(path) as tmp:
    sf.write(str(tmp), pcm, int(sample_rate), subtype="PCM_16", format="WAV")


def is_complete(path: Path) -> bool:
  """A finished utterance file: atomic writes make 'exists and decodes' enough."""
  try:
    return sf.info(str(path)).frames > 0
  except (sf.LibsndfileError, RuntimeError, OSError):
    return False


# -- real recordings --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recording:
  """One real audio file: its speaker, its transcript (None: transcribe) and language."""
  path: Path
  speaker: str
  text: str | None
  language: str
  folder: str = ""  # the --real folder it came from
  group: str = ""  # what its speaker is named after: a manifest speaker, subfolder or stem


def _read_transcript(path: Path) -> str:
  raw = path.read_bytes()
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError:
    text = raw.decode("latin-1")
  return " ".join(text.split())


def real_recordings(folder, language: str = "en-us") -> list[Recording]:
  """The recordings of a folder of real speech.

  With a `manifest.jsonl` in the folder, its lines (`audio` relative to the folder, `text`,
  optional `speaker` and `language`) are the recordings. Otherwise every audio file under the
  folder is one, its transcript the same-stem `.txt` if there is one. Speakers: the manifest's
  `speaker`, else one per top-level subfolder (`DIR/<speaker>/...`), else one per file directly
  in DIR. Speaker names are `real-<folder>-<name>`.
  """
  if not Path(folder).is_dir():
    raise OvjaxError(f"--real {folder}: no such folder")
  folder = Path(folder).resolve()  # The resume check compares paths: make them cwd-proof.
  prefix = f"real-{_slug(folder.name)}"
  manifest = folder / "manifest.jsonl"
  out = []
  if manifest.is_file():
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
      if not line.strip():
        continue
      try:
        entry = json.loads(line)
      except json.JSONDecodeError as e:
        raise OvjaxError(f"{manifest}:{number}: not JSON ({e.msg})") from None
      if not isinstance(entry, dict) or not isinstance(entry.get("audio"), str):
        raise OvjaxError(f"{manifest}:{number}: needs a string \"audio\"")
      path = folder / entry["audio"]
      if not path.is_file():
        raise OvjaxError(f"{manifest}:{number}: audio file not found: {path}")
      text = entry.get("text")
      text = " ".join(text.split()) if isinstance(text, str) and text.strip() else None
      speaker = str(entry.get("speaker") or Path(entry["audio"]).stem)
      out.append(Recording(path, f"{prefix}-{_slug(speaker)}", text,
                           str(entry.get("language") or language), str(folder), speaker))
    return out
  for path in sorted(folder.rglob("*")):
    if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
      continue
    rel = path.relative_to(folder)
    speaker = rel.parts[0] if len(rel.parts) > 1 else path.stem
    txt = path.with_suffix(".txt")
    text = _read_transcript(txt) if txt.is_file() else None
    out.append(Recording(path, f"{prefix}-{_slug(speaker)}", text or None, language,
                         str(folder), speaker))
  if not out:
    raise OvjaxError(f"--real {folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it")
  return out


def _seconds(path: Path) -> float:
  try:
    info = sf.info(str(path))
    return info.frames / info.samplerate
  except (sf.LibsndfileError, RuntimeError):
    audio, rate = load_native(path)
    return len(audio) / rate


def load_native(path: Path) -> tuple[np.ndarray, int]:
  """A recording as float32 mono at its own sampling rate."""
  from ovjax.audio.io import load_audio  # Deferred: imports librosa.
  try:
    rate = int(sf.info(str(path)).samplerate)
  except (sf.LibsndfileError, RuntimeError) as e:
    raise AudioError(f"cannot read audio file {path}: {e}") from None
  return load_audio(path, rate), rate


def _split_long(audio: np.ndarray, rate: int, start: int, end: int, max_n: int,
                min_n: int) -> list[tuple[int, int]]:
  """Cut [start, end) at its quietest 20 ms frames until no piece is longer than `max_n`."""
  if end - start <= max_n:
    return [(start, end)]
  frame = max(1, rate // 50)
  lo, hi = start + min_n, end - min_n
  n = (hi - lo) // frame
  if n <= 0:
    mid = (start + end) // 2
  else:
    frames = audio[lo: lo + n * frame].reshape(n, frame).astype(np.float64)
    mid = lo + int(np.argmin(np.sum(frames**2, axis=1))) * frame + frame // 2
  return (_split_long(audio, rate, start, mid, max_n, min_n)
          + _split_long(audio, rate, mid, end, max_n, min_n))


def speech_segments(audio: np.ndarray, rate: int, min_s: float = MIN_UTTERANCE_S,
                    max_s: float = MAX_UTTERANCE_S,
                    target_s: float = TARGET_UTTERANCE_S) -> list[tuple[int, int]]:
  """A long recording cut at its pauses (webrtcvad) into utterances of `min_s`..`max_s` seconds.

  Phrases (speech between pauses of 0.25 s or more) are joined until an utterance is at least
  `target_s` long; a phrase longer than `max_s` is cut at its quietest moments. What stays
  shorter than `min_s` is joined to the previous utterance when that fits, else left out.
  """
  from ovjax.audio.vad import speech_regions  # Deferred: imports librosa and webrtcvad.
  min_n, max_n, target_n = int(min_s * rate), int(max_s * rate), int(target_s * rate)
  phrases = []
  for s, e in speech_regions(audio, rate, min_silence_s=0.25, pad_s=0.1):
    phrases.extend(_split_long(audio, rate, s, e, max_n, min_n))
  segments: list[list[int]] = []
  for s, e in phrases:
    if segments and segments[-1][1] - segments[-1][0] < target_n and e - segments[-1][0] <= max_n:
      segments[-1][1] = e
    else:
      segments.append([s, e])
  out: list[tuple[int, int]] = []
  for s, e in segments:
    if e - s >= min_n:
      out.append((s, e))
    elif out and e - out[-1][0] <= max_n:
      out[-1] = (out[-1][0], e)
  return out


# -- the plan ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One utterance of the plan. `text` is None until ASR has run (real, untranscribed)."""
  id: str
  speaker: str
  language: str
  audio: str  # relative to the corpus folder
  text: str | None
  holdout: bool = False
  # Real recordings: which file and which samples of it.
  recording: str | None = None
  span: tuple[int, int] | None = None

  @property
  def asr(self) -> bool:
    return self.recording is not None and self.text is None


def _asr_path(wav: Path) -> Path:
  return wav.with_name(wav.stem + ".asr.txt")


def plan_real(recordings: Sequence[Recording], holdout: int, seed: int,
              progress: Callable[[str], None] = lambda _: None
              ) -> tuple[list[Speaker], list[Utterance]]:
  """Speakers and utterances of real recordings; `holdout` utterances per speaker held out."""
  by_speaker: dict[str, list[Recording]] = {}
  for r in recordings:
    by_speaker.setdefault(r.speaker, []).append(r)
  speakers, utterances = [], []
  for name in sorted(by_speaker):
    recs = by_speaker[name]
    speakers.append(Speaker(name, "real", recs[0].folder, recs[0].group, recs[0].language))
    mine = []
    for rec in recs:
      if rec.text is not None and _seconds(rec.path) <= MAX_TRANSCRIBED_S:
        spans, text = [None], rec.text
      else:
        if not rec.language.lower().startswith("en"):
          raise OvjaxError(f"{rec.path}: no transcript, and the bundled ASR model is English "
                           f"only (language {rec.language})")
        audio, rate = load_native(rec.path)
        progress(f"cutting {rec.path} ({len(audio) / rate:.1f} s) at pauses")
        spans, text = speech_segments(audio, rate), None
      for span in spans:
        uid = f"{name}-{len(mine):04d}"
        mine.append(Utterance(uid, name, rec.language, f"wavs/{name}/{uid}.wav", text,
                              recording=str(rec.path), span=span))
    if holdout:
      if len(mine) <= holdout:
        raise OvjaxError(f"--holdout {holdout}: speaker {name} has only "
                         f"{len(mine)} utterances (at least one must stay for training)")
      rng = np.random.default_rng(_stable_int("holdout", seed, name))
      held = set(rng.choice(len(mine), size=holdout, replace=False).tolist())
      mine = [dataclasses.replace(u, holdout=i in held) for i, u in enumerate(mine)]
    utterances.extend(mine)
  return speakers, utterances


def plan_synthetic(speakers: Sequence[Speaker], sentences_per_speaker: int,
                   seed: int) -> list[Utterance]:
  """`sentences_per_speaker` bundled sentences of its language for every synthetic speaker."""
  cache: dict[str, list[str]] = {}
  out = []
  for s in speakers:
    lang = s.sentence_language
    if lang not in cache:
      cache[lang] = load_sentences(lang)
    for i, text in enumerate(assign_sentences(s.name, cache[lang], sentences_per_speaker, seed)):
      uid = f"{s.name}-{i:04d}"
      out.append(Utterance(uid, s.name, s.language, f"wavs/{s.name}/{uid}.wav", text))
  return out


# -- building ---------------------------------------------------------------------------------


@dataclasses.dataclass
class CorpusSummary:
  """What a build produced."""
  out: Path
  speakers: int
  utterances: int
  holdout: int
  seconds: float  # of the manifest's audio (held-out utterances not counted)
  made: int  # utterances written by this run (the rest were already there)
  dropped: int  # real utterances left out because ASR heard no words


def _sentence_digest(languages: Iterable[str]) -> dict[str, str]:
  return {lang: hashlib.sha256("\n".join(load_sentences(lang)).encode()).hexdigest()[:16]
          for lang in sorted(set(languages))}


def _check_config(out: Path, config: dict) -> None:
  path = out / CONFIG_NAME
  if path.is_file():
    try:
      old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
      old = None
    if old != config:
      changed = sorted(k for k in set(config) | set(old or {})
                       if (old or {}).get(k) != config.get(k))
      raise OvjaxError(f"{out} holds a corpus built with other options (differing: "
                       f"{', '.join(changed) or 'unreadable config'}): use another folder")
    return
  if out.is_dir() and any(out.iterdir()):
    raise OvjaxError(f"{out} is not empty and holds no {CONFIG_NAME}: refusing to write there")
  _write_json(path, config)


def _write_json(path: Path, data) -> None:
  with atomic_output(path) as tmp:
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_lines(path: Path, lines: Iterable[dict]) -> None:
  with atomic_output(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      for line in lines:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")


def _make_synthetic(out: Path, speaker: Speaker, utt: Utterance) -> None:
  audio, rate = synthesize(speaker, utt.text)
  write_pcm16(out / utt.audio, audio, rate)


def _make_recording(out: Path, recording: str, utts: Sequence[Utterance],
                    transcriber: Transcriber) -> None:
  """Every missing utterance of one recording: one decode of the file serves all its cuts."""
  audio, rate = load_native(Path(recording))
  for u in utts:
    wav = out / u.audio
    piece = audio if u.span is None else audio[u.span[0]:u.span[1]]
    if u.asr:
      text = transcriber(piece, rate)
      with atomic_output(_asr_path(wav)) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    write_pcm16(wav, piece, rate)


def _done(out: Path, u: Utterance) -> bool:
  wav = out / u.audio
  return is_complete(wav) and (not u.asr or _asr_path(wav).is_file())


def build_corpus(out, speakers: Sequence[Speaker], sentences_per_speaker: int, seed: int = 0,
                 recordings: Sequence[Recording] = (), holdout: int = 0, jobs: int = 2,
                 progress: Callable[[str], None] = lambda _: None,
                 bar: bool = False) -> CorpusSummary:
  """Synthesise (or cut) every utterance of the corpus into `out` and write its manifests.

  speakers: the synthetic speakers (`espeak_speakers`, `festival_speakers`, `select_speakers`).
  recordings: real recordings (`real_recordings`); `holdout` utterances of each real speaker go
  to holdout.jsonl instead of manifest.jsonl.
  jobs: engine processes run at once. A rerun resumes: utterances whose file exists are kept.
  """
  out = Path(out)
  if sentences_per_speaker < 1 and speakers:
    raise OvjaxError(f"sentences per speaker must be >= 1, got {sentences_per_speaker}")
  if jobs < 1:
    raise OvjaxError(f"--jobs must be >= 1, got {jobs}")
  if holdout < 0:
    raise OvjaxError(f"--holdout must be >= 0, got {holdout}")
  if out.exists() and not out.is_dir():
    raise OvjaxError(f"{out}: exists and is not a folder")
  names = [s.name for s in speakers]
  if len(set(names)) != len(names):
    raise OvjaxError("two synthetic speakers share a name")
  if any(s.source == "festival" for s in speakers):
    require_festival()
  if any(s.source == "espeak" for s in speakers):
    require_espeak()

  real_speakers, real_utts = plan_real(recordings, holdout, seed, progress)
  clash = set(names) & {s.name for s in real_speakers}
  if clash:
    raise OvjaxError(f"speaker name used twice: {sorted(clash)[0]}")
  utterances = real_utts + plan_synthetic(speakers, sentences_per_speaker, seed)
  all_speakers = list(real_speakers) + list(speakers)
  if not utterances:
    raise OvjaxError("nothing to build: no speakers")

  config = {
      "format": FORMAT_VERSION, "seed": seed, "sentences": sentences_per_speaker,
      "holdout": holdout, "speakers": [dataclasses.asdict(s) for s in all_speakers],
      "recordings": sorted({u.recording for u in real_utts}),
      "sentence_lists": _sentence_digest(s.sentence_language for s in speakers),
  }
  _check_config(out, config)

  by_name = {s.name: s for s in speakers}
  pending = [u for u in utterances if not _done(out, u)]
  tasks: list[tuple[Callable[[], None], int]] = []
  transcriber = Transcriber()
  per_recording: dict[str, list[Utterance]] = {}
  for u in pending:
    if u.recording is not None:
      per_recording.setdefault(u.recording, []).append(u)
    else:
      tasks.append((lambda u=u: _make_synthetic(out, by_name[u.speaker], u), 1))
  # Recordings first: each is one long task (decode + ASR) that should not end the run alone.
  tasks[:0] = [(lambda r=r, us=us: _make_recording(out, r, us, transcriber), len(us))
               for r, us in per_recording.items()]
  progress(f"{len(utterances)} utterances of {len(all_speakers)} speakers: "
           f"{len(utterances) - len(pending)} already there, {len(pending)} to make")
  _run_tasks(tasks, jobs, len(utterances), len(utterances) - len(pending), bar)
  return _write_manifests(out, all_speakers, utterances, len(pending))


def _run_tasks(tasks, jobs: int, total: int, initial: int, bar: bool) -> None:
  from tqdm import tqdm  # Deferred: only builds show a bar.
  import sys
  with tqdm(total=total, initial=initial, unit="utt", disable=not bar, file=sys.stderr,
            dynamic_ncols=True) as meter:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    try:
      futures = {pool.submit(fn): n for fn, n in tasks}
      for future in concurrent.futures.as_completed(futures):
        future.result()  # The first failure stops the build (see the finally clause).
        meter.update(futures[future])
    finally:
      pool.shutdown(wait=True, cancel_futures=True)


def _write_manifests(out: Path, speakers: Sequence[Speaker], utterances: Sequence[Utterance],
                     made: int) -> CorpusSummary:
  stats = {s.name: [0, 0.0, 0, 0] for s in speakers}  # utterances, seconds, rate, held out
  train, held, dropped, seconds = [], [], 0, 0.0
  for u in utterances:
    wav = out / u.audio
    text = u.text
    if u.asr:
      text = _asr_path(wav).read_text(encoding="utf-8").strip()
      if not text:
        dropped += 1
        continue
    info = sf.info(str(wav))
    line = {"audio": u.audio, "text": text, "speaker": u.speaker, "language": u.language}
    if u.asr:
      line["transcript"] = "asr"
    (held if u.holdout else train).append(line)
    entry = stats[u.speaker]
    entry[2] = info.samplerate
    if u.holdout:
      entry[3] += 1
      continue
    entry[0] += 1
    entry[1] += info.frames / info.samplerate
    seconds += info.frames / info.samplerate
  described = {}
  for s in speakers:
    n, secs, rate, n_held = stats[s.name]
    described[s.name] = {"source": s.source, "voice": s.voice, "variant": s.variant,
                         "pitch": s.pitch, "speed": s.speed, "warp": s.warp,
                         "language": s.language, "sample_rate": rate, "utterances": n,
                         "seconds": round(secs, 3), "holdout": n_held}
  _write_lines(out / "manifest.jsonl", train)
  if held or (out / "holdout.jsonl").exists():
    _write_lines(out / "holdout.jsonl", held)
  _write_json(out / "speakers.json", described)
  return CorpusSummary(out, len(speakers), len(train), len(held), seconds, made, dropped)
