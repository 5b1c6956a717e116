"""`python -m infer.extract_se ...` from a checkout: the same as `ovjax extract-se ...`."""
import sys

from ovjax.cli import main

if __name__ == "__main__":
  sys.exit(main(["extract-se", *sys.argv[1:]]))
