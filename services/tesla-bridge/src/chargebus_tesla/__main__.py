"""`python -m chargebus_tesla` runs the tesla-bridge service."""

import sys

from chargebus_tesla.service import main

sys.exit(main())
