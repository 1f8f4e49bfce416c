"""The request's JSON body as an object; anything else is the API client's mistake (HTTP 400)."""

from __future__ import annotations

from typing import Any

from flask import request

from admin.context import InputError


def json_object(hint: str = "send a JSON object", optional: bool = False) -> dict[str, Any]:
    """The body when it is a JSON object; with ``optional``, no body (or not JSON) is ``{}``.

    Anything else raises ``InputError(hint)``.
    """
    body = request.get_json(silent=True)
    if body is None and optional:
        return {}
    if not isinstance(body, dict):
        raise InputError(hint)
    return body
