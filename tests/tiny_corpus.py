"""A tiny multi-speaker corpus for training tests: espeak-ng voices, Festival voices and pieces of
the real recordings in ../shared/reference/audio (transcribed by pocketsphinx), built once per
test session with `ovjax.data.synth` (the library behind `ovjax corpus synth`)."""
from __future__ import annotations

from pathlib import Path

import soundfile as sf

from conftest import reference_path
from ovjax.audio.io import load_audio
from ovjax.data import synth


def build_tiny_corpus(out: Path, seed: int = 0, speakers: int = 6, sentences: int = 8) -> Path:
  """Returns the manifest path. Real speech: the first 8 s of two recordings, one speaker each."""
  real = out / "real"
  real.mkdir(parents=True, exist_ok=True)
  for name in ("demo_speaker0", "demo_speaker2"):
    audio = load_audio(reference_path("audio", f"{name}.mp3"), 22050)[:8 * 22050]
    sf.write(real / f"{name}.wav", audio, 22050)
  groups = [synth.espeak_speakers(["en"], pitches=(30, 70), speeds=(160,)),
            synth.festival_speakers(["en"], warps=(0.9, 1.1), rates=(1.0,))]
  chosen = synth.select_speakers(groups, speakers, seed)
  synth.build_corpus(out / "corpus", chosen, sentences, seed=seed,
                     recordings=synth.real_recordings(real), jobs=2)
  return out / "corpus" / "manifest.jsonl"
