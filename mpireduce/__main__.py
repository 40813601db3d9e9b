"""``python -m mpireduce`` runs the command-line launcher."""

import sys

from .cli import main

sys.exit(main())
