"""`ovjax train base|converter --config CONFIG --workdir DIR [section.key=value ...]`."""
from __future__ import annotations

from ovjax.cli import common
from ovjax.errors import OvjaxError


def register(subparsers, parents=()) -> None:
  p = subparsers.add_parser(
      "train", parents=list(parents), help="train a base speaker TTS or a tone-colour converter",
      description="Train a model from an experiment config (a Python file, or the name of one "
                  "shipped in ovjax.configs: converter_tiny, converter_demo, converter_full, "
                  "converter_finetune, base_tiny, base_full). The workdir holds the dataset, checkpoints, "
                  "metrics.jsonl, TensorBoard events and samples; running the same command "
                  "again resumes exactly where the run stopped (also after kill -9). SIGTERM "
                  "saves and stops. Overrides: data.source=PATH, train.steps=N, "
                  "train.init_from=DIR, ... (values in JSON: numbers, true/false, [lists]).")
  p.add_argument("kind", choices=("base", "converter"), help="which model the config trains")
  p.add_argument("--config", required=True, metavar="CONFIG", help="experiment config")
  p.add_argument("--workdir", required=True, metavar="DIR", help="the run's folder")
  p.add_argument("overrides", nargs="*", metavar="section.key=value")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  dist = p.add_argument_group("multi-host (TPU pods, several machines)")
  dist.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() (on TPU pods and SLURM it finds "
                         "its peers itself; elsewhere give the three options below)")
  dist.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
  dist.add_argument("--num-processes", type=int, metavar="N")
  dist.add_argument("--process-id", type=int, metavar="I")
  p.set_defaults(run=run, extra_positionals="overrides")


def initialize_distributed(args) -> None:
  import jax
  manual = (args.coordinator, args.num_processes, args.process_id)
  if any(v is not None for v in manual) and not all(v is not None for v in manual):
    raise OvjaxError("--coordinator, --num-processes and --process-id go together")
  # CPU processes exchange gradients through gloo (accelerators use their own collectives).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if all(v is not None for v in manual):
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  else:
    jax.distributed.initialize()


def run(args) -> int:
  progress = common.Progress(args)
  if args.distributed or args.coordinator is not None:
    initialize_distributed(args)  # Before anything touches a JAX backend.
  from ovjax.training.config import load_experiment  # Deferred: imports JAX.
  exp = load_experiment(args.config, args.overrides)
  if exp.kind != args.kind:
    raise OvjaxError(f"--config {args.config} trains a {exp.kind}, not a {args.kind}")
  from ovjax.training.trainer import train_and_evaluate
  progress(f"training a {exp.kind} in {args.workdir}")
  last = train_and_evaluate(exp, args.workdir, progress=not (args.no_progress or progress.quiet))
  if last:
    progress(f"step {last['step']}: loss_g {last['loss_g_total']:.3f}, mel "
             f"{last['loss_mel']:.3f}, kl {last['loss_kl']:.3f} ({progress.elapsed:.0f} s)")
  return 0
