"""``python -m cryoai``: the ``cryoai`` command (also what ``torchrun -m cryoai …`` runs on each rank)."""

import sys

from cryoai.cli.main import main

sys.exit(main())
