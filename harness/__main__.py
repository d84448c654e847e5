"""`python -m harness ...`: the same as the `harness` command (what torchrun and subprocesses call)."""

import sys

from harness.cli import main

sys.exit(main())
