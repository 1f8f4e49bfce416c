"""A page action's outcome for its fragment: the value it returned, or the one line of the error it raised.

    message, error = attempt(lambda: save_tokens(settings, values), InputError)
    render_template("settings/_tokens.html", message=message, error=error, ...)

Errors outside ``errors`` still reach the app's error handlers (a 4xx/5xx page or JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from services.errors import ComfyPodError

T = TypeVar("T")


Errors = type[ComfyPodError] | tuple[type[ComfyPodError], ...]


def attempt(work: Callable[[], T], errors: Errors = ComfyPodError) -> tuple[T | None, str | None]:
    """``(work(), None)``, or ``(None, str(error))`` when it raises one of ``errors``."""
    try:
        return work(), None
    except errors as err:
        return None, str(err)
