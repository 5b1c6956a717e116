"""The OpenVoice pipeline: a base speaker says the text, the converter gives it the reference's
tone colour."""
from __future__ import annotations

import librosa

from ovjax.api.converter import ToneColorConverter
from ovjax.api.tts import BaseSpeakerTTS, EspeakSpeaker


def clone(converter: ToneColorConverter, base: BaseSpeakerTTS | EspeakSpeaker, references,
          texts, speaker: str = "default", language: str | None = None, speed: float = 1.0,
          tau: float = 0.3, seed: int = 0, target_se=None, use_vad: bool = True,
          progress=lambda message: None, return_base: bool = False, **tts_options):
  """Text(s) -> speech in the references' tone colour, at the converter's rate.

  The source embedding is the base folder's embedding file for the style when it has one (as
  OpenVoice's demos use), otherwise extracted from the base speaker's own output. `target_se`
  (an array or a file, or a list with one per text) skips extracting the references. seed: an
  int, or one per text (text k then gets what cloning it alone with seed[k] gives).
  return_base: also return the base speaker's speech (at the converter's rate), as
  (converted, base).
  """
  single = isinstance(texts, str)
  texts = [texts] if single else list(texts)
  if target_se is None:
    progress("extracting the reference's tone colour")
    target_se = converter.extract_se(references, use_vad=use_vad)
  target_se = ([converter.tone_color(t) for t in target_se]
               if isinstance(target_se, (list, tuple)) else converter.tone_color(target_se))
  progress("synthesising with the base speaker")
  if isinstance(base, EspeakSpeaker):
    waves = base.synthesize(texts, speed=speed)
  else:
    waves = base.synthesize(texts, speaker, language, speed, seed=seed, **tts_options)
  if base.sampling_rate != converter.sampling_rate:
    waves = [librosa.resample(w, orig_sr=base.sampling_rate, target_sr=converter.sampling_rate,
                              res_type="soxr_hq") for w in waves]
  source_se = base.source_se(speaker) if isinstance(base, BaseSpeakerTTS) else None
  if source_se is None:
    progress("extracting the base speaker's tone colour")
    # The base speaker's output is clean synthetic speech: embed it whole (a VAD adds nothing and
    # can miss unusual synthetic voices).
    # One embedding per text, so a text's result does not depend on what else is in the list.
    source_se = list(converter.embed(list(waves)))
  progress("converting")
  out = converter.convert(list(waves), source_se, target_se, tau=tau, seed=seed)
  if return_base:
    return (out[0], waves[0]) if single else (out, list(waves))
  return out[0] if single else out
