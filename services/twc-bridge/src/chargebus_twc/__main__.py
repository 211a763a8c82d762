"""`python -m chargebus_twc` runs the twc-bridge service."""

import sys

from chargebus_twc.service import main

sys.exit(main())
