"""Strict converters from environment strings to typed values.

Each one raises :class:`SettingsError` naming the variable, the bad value and what is allowed.
No I/O beyond the time-zone database lookup.
"""

from __future__ import annotations

import os
import re
import shlex
import zoneinfo
from pathlib import Path

from services.errors import SettingsError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _bad(name: str, value: str, allowed: str) -> SettingsError:
    return SettingsError(f"{name}={value!r} is not valid: expected {allowed}")


def boolean(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _bad(name, value, "one of true/false, yes/no, on/off, 1/0")


def integer(name: str, value: str, *, minimum: int, maximum: int) -> int:
    text = value.strip()
    try:
        number = int(text, 10)
    except ValueError:
        raise _bad(name, value, f"a whole number from {minimum} to {maximum}") from None
    if not minimum <= number <= maximum:
        raise _bad(name, value, f"a whole number from {minimum} to {maximum}")
    return number


def port(name: str, value: str) -> int:
    return integer(name, value, minimum=1, maximum=65535)


def timezone(name: str, value: str) -> str:
    text = value.strip()
    if not text or text.startswith("/") or ".." in text:
        raise _bad(name, value, "an IANA time zone such as Etc/UTC or Europe/Berlin")
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _bad(name, value, "an IANA time zone such as Etc/UTC or Europe/Berlin") from None
    return text


def _items(value: str) -> list[str]:
    """The parts of a comma, semicolon or space separated list; blanks dropped."""
    return [part for part in re.split(r"[,\s;]+", value.strip()) if part]


def _unique(items) -> tuple[str, ...]:
    """Duplicates dropped, order kept."""
    return tuple(dict.fromkeys(items))


def id_list(name: str, value: str) -> tuple[str, ...]:
    """Comma (or space) separated ids; blanks ignored, duplicates dropped, order kept."""
    for part in _items(value):
        if not _ID_RE.match(part):
            raise _bad(name, value, "comma-separated preset ids made of letters, digits, '_', '-', '.'")
    return _unique(_items(value))


def path(name: str, value: str) -> Path:
    text = value.strip()
    if not text or "\x00" in text:
        raise _bad(name, value, "an absolute or relative folder path")
    # absolute, but symlinks kept: a venv's python is a link that must stay a link
    return Path(os.path.abspath(os.path.expanduser(text)))


def choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    word = value.strip().lower()
    if word not in allowed:
        raise _bad(name, value, "one of " + ", ".join(allowed))
    return word


def arguments(name: str, value: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as err:
        raise _bad(name, value, f"shell-style arguments ({err})") from None


def networks(name: str, value: str) -> tuple[str, ...]:
    """Comma (or space) separated IP addresses or CIDR blocks, normalised (``10.0.0.0/8``)."""
    import ipaddress

    try:
        return _unique(str(ipaddress.ip_network(part, strict=False)) for part in _items(value))
    except ValueError:
        raise _bad(name, value, "comma-separated IP addresses or CIDR blocks such as 10.0.0.0/8") from None


def url(name: str, value: str) -> str:
    """A URL the pod may fetch (https; http only for a loopback host), or empty for none."""
    from services.urls import url_problem

    text = value.strip()
    problem = url_problem(text) if text else None
    if problem:
        raise _bad(name, value, f"a URL the pod may fetch, or empty; this one {problem}")
    return text


def host(name: str, value: str) -> str:
    text = value.strip()
    if not re.match(r"^[A-Za-z0-9.:\-\[\]]+$", text):
        raise _bad(name, value, "an IP address or host name such as 0.0.0.0 or 127.0.0.1")
    return text
