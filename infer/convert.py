"""`python -m infer.convert ...` from a checkout: the same as `ovjax convert ...`."""
import sys

from ovjax.cli import main

if __name__ == "__main__":
  sys.exit(main(["convert", *sys.argv[1:]]))
