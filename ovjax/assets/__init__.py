"""Files that ship inside the package: the demo tone-colour converter (trained by ovjax, see its
MODEL_CARD.md) and the demo's reference recording (OpenVoice's, MIT). Found through
importlib.resources, so they work from a wheel as from a checkout."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ovjax.errors import OvjaxError


def _asset(*parts: str) -> Path:
  path = Path(str(resources.files("ovjax.assets").joinpath(*parts)))
  if not path.exists():
    raise OvjaxError(f"this ovjax install lacks its bundled {'/'.join(parts)} "
                     "(a broken wheel? reinstall ovjax)")
  return path


def demo_converter() -> Path:
  """The bundled demo converter's folder (official layout: config.json + checkpoint.pth)."""
  return _asset("converter_demo")


def demo_reference() -> Path:
  """The bundled reference recording (OpenVoice's resources/demo_speaker0.mp3)."""
  return _asset("reference", "demo_speaker0.mp3")
