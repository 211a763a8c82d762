"""`python -m chargebus_history` runs the history service."""

import sys

from chargebus_history.service import main

sys.exit(main())
