"""One exception type for bad input, so entry points can print it as one line and exit non-zero."""


class GanModelError(Exception):
    """A user-facing error: bad params, a corrupt file, an impossible request.

    The message names the field or file and what was expected; entry points print it as a
    single line (`error: <message>`) and exit with status 2.
    """
