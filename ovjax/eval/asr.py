"""Intelligibility: English ASR with pocketsphinx's bundled model, and word/character error rates
(jiwer) against a text. Both ship as wheels (the `eval` extra); neither needs a network."""
from __future__ import annotations

import re
import threading

import numpy as np

from ovjax.errors import OvjaxError

ASR_RATE = 16000  # pocketsphinx's bundled en-us model


class Transcriber:
  """English ASR with pocketsphinx's bundled model; one decoder per thread (they are stateful)."""

  def __init__(self):
    self._local = threading.local()

  def _decoder(self):
    decoder = getattr(self._local, "decoder", None)
    if decoder is None:
      try:
        from pocketsphinx import Decoder
      except ImportError:
        raise OvjaxError("ASR needs the PyPI package pocketsphinx "
                         "(pip install 'ovjax[eval]')") from None
      # Capped search (active HMMs and words per frame): 4x faster than the defaults on noisy
      # or expressive speech, where the default search explodes, for about the same words.
      decoder = self._local.decoder = Decoder(samprate=ASR_RATE, loglevel="FATAL",
                                              maxhmmpf=3000, maxwpf=5)
    return decoder

  def __call__(self, audio: np.ndarray, rate: int) -> str:
    import librosa  # Deferred: only transcription resamples.
    x = audio if rate == ASR_RATE else librosa.resample(audio, orig_sr=rate,
                                                        target_sr=ASR_RATE, res_type="soxr_hq")
    pcm = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()
    decoder = self._decoder()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    # Filler "words" like <sil> or [NOISE] never reach the hypothesis string; spaces are tidied.
    return " ".join(hyp.hypstr.split()) if hyp is not None else ""


def normalize_text(text: str) -> str:
  """Lower case, letters, digits and apostrophes only, single spaces: what the ASR can output."""
  text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("’", "'"))
  return " ".join(text.split())


def error_rates(reference: str, hypothesis: str) -> dict[str, float]:
  """WER and CER of a hypothesis against a reference text, both normalised first."""
  try:
    import jiwer
  except ImportError:
    raise OvjaxError("error rates need the PyPI package jiwer (pip install 'ovjax[eval]')") from None
  ref, hyp = normalize_text(reference), normalize_text(hypothesis)
  if not ref:
    raise OvjaxError(f"text {reference[:40]!r} has no words to score against")
  return {"wer": float(jiwer.wer(ref, hyp)), "cer": float(jiwer.cer(ref, hyp))}
