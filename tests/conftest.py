"""Shared fixtures: the reference data beside the clone (../shared/reference)."""
from pathlib import Path

import jax
import numpy as np
import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def reference_path(*parts) -> Path:
  path = REFERENCE.joinpath(*parts)
  if not path.exists():
    # A missing fixture is a failure, never a skip: parity is what these tests are for.
    raise FileNotFoundError(f"reference data missing: {path} (clone the repo beside shared/)")
  return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
  return reference_path()


def load_golden(model: str):
  return dict(np.load(reference_path("openvoice", model, "golden.npz")))


@pytest.fixture(scope="session")
def converters():
  """{name: (config, params, golden)} for the two small reference converters."""
  from ovjax.checkpoint.store import load_converter
  out = {}
  for name in ("converter_v2_small", "converter_v1_small"):
    config, params = load_converter(reference_path("openvoice", name))
    out[name] = (config, jax.tree.map(np.asarray, params), load_golden(name))
  return out


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
  """A tiny multi-speaker training corpus (espeak-ng, Festival, real recordings): its manifest."""
  from tiny_corpus import build_tiny_corpus
  return build_tiny_corpus(tmp_path_factory.mktemp("tiny_corpus"))
