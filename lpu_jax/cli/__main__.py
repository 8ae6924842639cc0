"""`python -m lpu_jax.cli ...`: the same as the `lpu-jax` command."""

import sys

from . import main

sys.exit(main())
