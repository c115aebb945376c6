"""``python -m tps_diffusion`` is the ``tps-diffusion`` command."""

import sys

from .cli import main

sys.exit(main())
