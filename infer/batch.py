"""`python -m infer.batch ...` from a checkout: the same as `ovjax batch ...`."""
import sys

from ovjax.cli import main

if __name__ == "__main__":
  sys.exit(main(["batch", *sys.argv[1:]]))
