"""``python -m mnp.agent``: the node agent (kept for hosts and scripts that start it by this name)."""

import sys

from mnp.node.agent import main

if __name__ == "__main__":
    sys.exit(main())
