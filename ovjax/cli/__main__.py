"""`python -m ovjax.cli ...`: the same as `ovjax ...`."""
import sys

from ovjax.cli import main

sys.exit(main())
