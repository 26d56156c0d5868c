"""One exception type for bad input, so entry points can print it as one line and exit non-zero."""


class GanModelError(Exception):
    """A user-facing error: bad params, a corrupt file, an impossible request.

    The message names the field or file and what was expected; entry points print it as a
    single line (`error: <message>`) and exit with status 2.
    """


def brief(err: BaseException, limit: int = 200) -> str:
    """The first line of an underlying error, for a one-line message: library errors (torch's
    unpickler, urllib) run to paragraphs of advice."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
