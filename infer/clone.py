"""`python -m infer.clone ...` from a checkout: the same as `ovjax clone ...`."""
import sys

from ovjax.cli import main

if __name__ == "__main__":
  sys.exit(main(["clone", *sys.argv[1:]]))
