"""ovjax: OpenVoice (instant voice cloning) in JAX/Flax."""

__version__ = "0.1.0"
