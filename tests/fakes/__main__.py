"""The tools' shims run this: `python -m tests.fakes TOOL ARGS` answers as the fake platform."""

import sys

from . import main

sys.exit(main(sys.argv[1], sys.argv[2:]))
