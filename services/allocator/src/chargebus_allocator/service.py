"""`chargebus-allocator`: the allocator service's entry point."""

from __future__ import annotations

import sys

from chargebus.config import AllocatorServiceConfig
from chargebus.runner import ServiceEntry

from chargebus_allocator.runtime import SERVICE, setup

#: The service's `main()` (its own process) and what `chargebus run` starts in one process with others.
main = ServiceEntry(SERVICE, AllocatorServiceConfig, setup)


if __name__ == "__main__":
    sys.exit(main())
