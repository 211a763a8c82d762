"""`python -m chargebus_forecast` runs the forecast service."""

import sys

from chargebus_forecast.service import main

sys.exit(main())
