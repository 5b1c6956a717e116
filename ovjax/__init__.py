"""ovjax: OpenVoice (instant voice cloning) in JAX/Flax."""

__version__ = "0.1.0"

__all__ = ["ToneColorConverter"]


def __getattr__(name):
  # Lazy, so `import ovjax` (and `ovjax --help`) does not pay for importing JAX.
  if name == "ToneColorConverter":
    from ovjax.api import ToneColorConverter
    return ToneColorConverter
  raise AttributeError(f"module 'ovjax' has no attribute {name!r}")
