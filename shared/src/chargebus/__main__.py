import sys

from chargebus.cli import main

sys.exit(main())
