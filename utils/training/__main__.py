"""`python -m utils.training train|runs|hpo` (see cli.py)."""

import sys

from utils.training.cli import main

sys.exit(main())
