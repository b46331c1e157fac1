"""``python -m geoae.cli``: the same as ``geoae``."""

import sys

from . import main

sys.exit(main())
