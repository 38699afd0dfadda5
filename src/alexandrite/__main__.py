import sys

from alexandrite.cli import main

sys.exit(main())
