"""``python -m tests._servers.llm [--port N] [--max-seconds S]``: serve default echo answers."""

import sys

from tests._servers.llm import main

sys.exit(main())
