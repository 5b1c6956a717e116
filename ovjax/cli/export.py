"""`ovjax export WORKDIR DST`: a trained run -> an inference folder."""
from __future__ import annotations

from pathlib import Path

from ovjax.cli import common
from ovjax.errors import CheckpointError


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "export", parents=list(parents), help="a training workdir -> an inference model folder",
      description="Write the newest (or --step) checkpoint of a training run as a model folder "
                  "that `ovjax convert/tts/clone` load: the official OpenVoice layout "
                  "(config.json + checkpoint.pth, which torch.load(weights_only=True) and the "
                  "official code read; written without PyTorch), or --format orbax. Training-only "
                  "parts (the converter's text encoder, the discriminator) are left out.")
  p.add_argument("workdir", metavar="WORKDIR")
  p.add_argument("dst", metavar="DST", help="new folder (must not exist or be empty)")
  p.add_argument("--format", choices=("official", "orbax"), default="official")
  p.add_argument("--step", type=int, help="the checkpoint to export (default: the newest)")
  p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                 help="tensor type of the official checkpoint.pth (float16: half the size; "
                      "loaded back as float32) (default: float32)")
  p.set_defaults(run=run)


def run(args) -> int:
  progress = common.Progress(args)
  dst = Path(args.dst)
  if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
    raise CheckpointError(f"{dst}: destination exists and is not an empty folder")
  common.check_creatable_parent(dst, "DST")
  from ovjax.training.export import export  # Deferred: imports JAX.
  step = export(args.workdir, dst, args.format, args.step, args.dtype)
  progress(f"exported step {step} of {args.workdir} to {dst} ({args.format} layout)")
  return 0
