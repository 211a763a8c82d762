"""`chargebus-history`: the history service's entry point (the runtime is `runtime.py`)."""

from __future__ import annotations

import sys

from chargebus.config import HistoryServiceConfig
from chargebus.runner import ServiceEntry

from chargebus_history.runtime import NAME, setup

#: The service's `main()` (its own process) and what `chargebus run` starts in one process with others.
main = ServiceEntry(NAME, HistoryServiceConfig, setup)


if __name__ == "__main__":
    sys.exit(main())
