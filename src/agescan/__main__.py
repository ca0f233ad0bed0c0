import sys

from agescan.cli.main import main

sys.exit(main())
