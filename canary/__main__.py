import sys

from canary.app.cli import main

sys.exit(main())
