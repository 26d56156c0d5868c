"""Shared behaviour of command-line entry points: one-line errors and exit codes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ganmodel.errors import GanModelError


def run_main(main: Callable[[], int | None]) -> None:
    """Call `main`; a `GanModelError` prints `error: <one line>` and exits 2."""
    try:
        code = main()
    except GanModelError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def stage_wall_time_s() -> float:
    """Seconds since this process started: a stage's wall time as its user waits for it, with the
    interpreter start-up and imports (torch, MLflow: seconds here) that in-code timers miss."""
    import psutil

    return time.time() - psutil.Process().create_time()
