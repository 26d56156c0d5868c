"""Shared behaviour of command-line entry points: one-line errors and exit codes."""

from __future__ import annotations

import sys
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
