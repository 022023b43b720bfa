"""Entry point: `python -m pipeline --help`."""

import sys

from pipeline.run import main

sys.exit(main())
