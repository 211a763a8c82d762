"""`python -m chargebus_ocpp` runs the ocpp-bridge service."""

import sys

from chargebus_ocpp.service import main

sys.exit(main())
