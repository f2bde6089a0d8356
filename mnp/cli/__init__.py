"""The ``mnp`` command (Click): the one place that prints and the one error boundary."""

import os as _os
import sys as _sys

if any(_word in ("launch", "run", "node") for _word in _sys.argv[1:3]):  # a job: from here on no signal may be lost
    from mnp.interrupts import catch_early, pending

    catch_early()
    if "pool" in _sys.argv[2:] or "--via=pool" in _sys.argv or "MNP_VIA" in _os.environ:
        from mnp.cli.front import try_front  # a pool's front runs the job: no heavy import here

        try_front(_sys.argv, pending)  # returns only when it did not
        catch_early()

from mnp.cli.main import cli, main  # noqa: E402 - after the signal handlers

__all__ = ["cli", "main"]
