"""URL rules shared by the catalog, the download worker and the settings: which URLs the pod may
fetch (https; plain http only for loopback hosts, where tests serve files)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): tests serve files there."""
    host = host.lower().strip("[]").rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a catalog download URL, or None when it can.

    https only; plain http only for loopback hosts; a host is required; no user:password.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
        _ = parts.port
    except ValueError as err:
        return f"not a valid URL ({err})"
    if parts.scheme not in ("https", "http"):
        return "must start with https://"
    if not host:
        return "has no host"
    if parts.username or parts.password:
        return "must not carry a user name or password (use HF_TOKEN / CIVITAI_TOKEN)"
    if parts.scheme == "http" and not is_loopback_host(host):
        return "must use https:// (plain http is only allowed for loopback hosts)"
    return None
