import sys

from medlake.cli import main

sys.exit(main())
