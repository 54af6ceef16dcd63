"""`python -m utils.training train|runs|hpo` (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
