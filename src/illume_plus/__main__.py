import sys

from illume_plus.cli import main

sys.exit(main())
