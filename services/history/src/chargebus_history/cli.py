"""`chargebus history …`: the history package's subcommands under the umbrella command."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from chargebus_history import export

USAGE = "usage: chargebus history export --from … --to … [--evse ID | --vin VIN] [--csv [--daily]] [--step S]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "export":
        return export.main(args[1:])
    asked = bool(args) and args[0] in ("-h", "--help")
    print(USAGE, file=sys.stdout if asked else sys.stderr)
    return 0 if asked else 2


if __name__ == "__main__":
    sys.exit(main())
