"""`ovjax import-checkpoint`: official OpenVoice converter folder -> imported ovjax folder."""
from __future__ import annotations

from pathlib import Path

import infer
from ovjax.errors import CheckpointError

_WEIGHTS = "checkpoint.pth"


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "import-checkpoint", parents=list(parents),
      help="official converter folder -> ovjax (Orbax) folder",
      description="Convert an official OpenVoice converter folder (config.json + checkpoint.pth) "
                  "into an ovjax folder (config.json + Orbax params), checking every tensor. "
                  "Other .pth files in it (tone-colour embeddings such as en_default_se.pth) "
                  "are copied along. The destination must not exist or be empty.")
  p.add_argument("src", metavar="SRC_DIR", help="official converter folder")
  p.add_argument("dst", metavar="DST_DIR", help="new folder to create")
  p.set_defaults(run=run)


def run(args) -> int:
  progress = infer.Progress(args)
  src, dst = Path(args.src), Path(args.dst)
  # Checked here as well as in save_imported, so a bad destination fails before the load.
  if dst.exists() and not dst.is_dir():
    raise CheckpointError(f"{dst}: destination exists and is not a directory")
  if dst.is_dir() and any(dst.iterdir()):
    raise CheckpointError(f"{dst}: destination exists and is not empty")
  infer.check_creatable_parent(dst, "DST_DIR")

  progress(f"loading checkpoint {src}")
  from ovjax.checkpoint.store import load_converter, save_imported  # Deferred: imports JAX.
  config, params = load_converter(src)
  # Tone-colour embeddings shipped beside the weights (official base folders hold *_se.pth).
  extra = sorted(f for f in src.glob("*.pth") if f.name != _WEIGHTS and f.is_file())
  progress(f"writing {dst}")
  save_imported(dst, config, params, extra_files=extra)

  leaves = _leaves(params)
  summary = (f"imported {src} -> {dst}: {config.version} converter, {len(leaves)} tensors, "
             f"{sum(a.size for a in leaves):,} parameters")
  if extra:
    names = ", ".join(f.name for f in extra)
    summary += f", {infer.plural(len(extra), 'tone-colour file')} ({names})"
  if not progress.quiet:
    print(summary)  # The command's result: stdout, unlike the status lines.
  return 0


def _leaves(tree) -> list:
  if isinstance(tree, dict):
    return [leaf for v in tree.values() for leaf in _leaves(v)]
  return [tree]
