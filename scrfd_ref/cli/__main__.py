"""``python -m scrfd_ref.cli``: the ``scrfd-ref`` console script."""
import sys

from scrfd_ref.cli.app import main

sys.exit(main())
