"""``python -m mnp.probe``: the doctor's probe program (kept for scripts that start it by this name)."""

import sys

from mnp.doctor.probe import main

if __name__ == "__main__":
    sys.exit(main())
