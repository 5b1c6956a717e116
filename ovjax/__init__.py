"""ovjax: OpenVoice (instant voice cloning) in JAX/Flax."""

__version__ = "0.1.0"

__all__ = ["BaseSpeakerTTS", "EspeakSpeaker", "ToneColorConverter", "clone"]


def __getattr__(name):
  # Lazy, so `import ovjax` (and `ovjax --help`) does not pay for importing JAX.
  if name in __all__:
    from ovjax import api
    return getattr(api, name)
  raise AttributeError(f"module 'ovjax' has no attribute {name!r}")
