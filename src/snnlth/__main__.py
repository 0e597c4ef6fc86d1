import sys

from snnlth.cli import main

sys.exit(main())
