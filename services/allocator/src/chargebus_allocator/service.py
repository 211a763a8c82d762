"""`chargebus-allocator`: the allocator service's entry point."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from chargebus.config import AllocatorServiceConfig
from chargebus.runner import run_service

from chargebus_allocator.runtime import SERVICE, setup


def main(argv: Sequence[str] | None = None) -> int:
    return run_service(SERVICE, AllocatorServiceConfig, setup, argv)


if __name__ == "__main__":
    sys.exit(main())
