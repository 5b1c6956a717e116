"""`ovjax import-checkpoint`: official OpenVoice folder (converter or base speaker TTS) -> imported
ovjax folder."""
from __future__ import annotations

from pathlib import Path

from ovjax.cli import common
from ovjax.errors import CheckpointError

_WEIGHTS = "checkpoint.pth"


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "import-checkpoint", parents=list(parents),
      help="official converter or base speaker folder -> ovjax (Orbax) folder",
      description="Convert an official OpenVoice folder (config.json + checkpoint.pth), a "
                  "tone-colour converter or a base speaker TTS (config.json says which), into an "
                  "ovjax folder (config.json + Orbax params), checking every tensor. Other .pth "
                  "files in it and *_se.npy files (tone-colour embeddings such as "
                  "en_default_se.pth) are copied along. The destination must not exist or be "
                  "empty.")
  p.add_argument("src", metavar="SRC_DIR", help="official converter or base speaker folder")
  p.add_argument("dst", metavar="DST_DIR", help="new folder to create")
  p.set_defaults(run=run)


def run(args) -> int:
  progress = common.Progress(args)
  src, dst = Path(args.src), Path(args.dst)
  # Checked here as well as in save_imported, so a bad destination fails before the load.
  if dst.exists() and not dst.is_dir():
    raise CheckpointError(f"{dst}: destination exists and is not a directory")
  if dst.is_dir() and any(dst.iterdir()):
    raise CheckpointError(f"{dst}: destination exists and is not empty")
  common.check_creatable_parent(dst, "DST_DIR")

  progress(f"loading checkpoint {src}")
  # Deferred: imports JAX.
  from ovjax.checkpoint.store import checkpoint_kind, load_checkpoint, save_imported
  kind = checkpoint_kind(src)  # From config.json: n_speakers > 0 is a base speaker TTS.
  config, params = load_checkpoint(src, kind)
  # Tone-colour embeddings shipped beside the weights (official base folders hold *_se.pth;
  # `BaseSpeakerTTS` also finds *_se.npy).
  extra = sorted(f for f in set(src.glob("*.pth")) | set(src.glob("*_se.npy"))
                 if f.name != _WEIGHTS and f.is_file())
  progress(f"writing {dst}")
  save_imported(dst, config, params, extra_files=extra)

  leaves = _leaves(params)
  if kind == "converter":
    model = f"{config.version} converter"
  else:
    model = f"base speaker TTS ({common.plural(len(config.speaker_ids), 'style')})"
  summary = (f"imported {src} -> {dst}: {model}, {len(leaves)} tensors, "
             f"{sum(a.size for a in leaves):,} parameters")
  if extra:
    names = ", ".join(f.name for f in extra)
    summary += f", {common.plural(len(extra), 'tone-colour file')} ({names})"
  if not progress.quiet:
    print(summary)  # The command's result: stdout, unlike the status lines.
  return 0


def _leaves(tree) -> list:
  if isinstance(tree, dict):
    return [leaf for v in tree.values() for leaf in _leaves(v)]
  return [tree]
