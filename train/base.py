"""`python -m train.base --config CONFIG --workdir DIR [section.key=value ...]` from a checkout:
the same as `ovjax train base ...`."""
import sys

from ovjax.cli import main

if __name__ == "__main__":
  sys.exit(main(["train", "base", *sys.argv[1:]]))
