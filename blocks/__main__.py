"""`python -m blocks`: see `blocks.cli`."""

import sys

from blocks.cli import main

sys.exit(main())
