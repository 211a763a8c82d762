"""`python -m chargebus_allocator` runs the allocator service."""

import sys

from chargebus_allocator.service import main

sys.exit(main())
