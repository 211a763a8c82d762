"""`chargebus sim <simulator> …`: run one simulator in the foreground (for manual tests against real services)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

#: Simulator name → the module whose `main(argv)` runs it.
SIMULATORS = {
    "twc": "chargebus_sim.twc_slave",
    "fleet-api": "chargebus_sim.fleet_api",
    "teslamate": "chargebus_sim.teslamate",
    "gen3": "chargebus_sim.gen3",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in SIMULATORS:
        asked = bool(args) and args[0] in ("-h", "--help")
        names = ", ".join(SIMULATORS)
        usage = f"usage: chargebus sim <{names}> [--help | options]"
        print(usage, file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    module = importlib.import_module(SIMULATORS[args[0]])
    run = cast("Callable[[list[str]], int | None] | None", getattr(module, "main", None))
    if run is None:
        print(f"simulator {args[0]!r} has no command line", file=sys.stderr)
        return 2
    return run(args[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
