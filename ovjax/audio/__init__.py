"""Audio input/output, speech detection and (later) spectrograms."""

from ovjax.audio.io import check_not_silent, load_audio, write_wav

__all__ = ["check_not_silent", "load_audio", "write_wav"]
