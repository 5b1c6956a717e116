"""`python -m train.converter --config CONFIG --workdir DIR [section.key=value ...]` from a checkout:
the same as `ovjax train converter ...`."""
import sys

from ovjax.cli import main

if __name__ == "__main__":
  sys.exit(main(["train", "converter", *sys.argv[1:]]))
