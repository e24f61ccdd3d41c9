"""`python -m xentc ...`: the xentc command line (see xentc/_cli.py)."""
import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
