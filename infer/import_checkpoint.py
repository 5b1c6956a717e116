"""`python -m infer.import_checkpoint ...` from a checkout: the same as `ovjax import-checkpoint ...`."""
import sys

from ovjax.cli import main

if __name__ == "__main__":
  sys.exit(main(["import-checkpoint", *sys.argv[1:]]))
