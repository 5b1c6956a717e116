"""The Python API, with OpenVoice's own names.

    ToneColorConverter.from_pretrained(dir).convert(src, src_se, tgt_se, tau=0.3)
    BaseSpeakerTTS.from_pretrained(dir).tts(text, "out.wav", speaker="cheerful")
    clone(converter, base, references, text) — base TTS, then the reference's tone colour.
"""
from ovjax.api.converter import ToneColorConverter
from ovjax.api.tts import BaseSpeakerTTS, EspeakSpeaker
from ovjax.api.clone import clone

__all__ = ["BaseSpeakerTTS", "EspeakSpeaker", "ToneColorConverter", "clone"]
