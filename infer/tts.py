"""`python -m infer.tts ...` from a checkout: the same as `ovjax tts ...`."""
import sys

from ovjax.cli import main

if __name__ == "__main__":
  sys.exit(main(["tts", *sys.argv[1:]]))
