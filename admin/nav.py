"""The navigation bar: one entry per area page, shown only when its endpoint exists."""

from __future__ import annotations

from flask import Flask, request, url_for

# (endpoint, label). An area's page endpoint is ``<area>.index``.
NAV: list[tuple[str, str]] = [
    ("dashboard.index", "Home"),
    ("presets.index", "Presets"),
    ("models.index", "Models"),
    ("workflows.index", "Workflows"),
    ("gallery.index", "Gallery"),
    ("nodes.index", "Nodes"),
    ("services.index", "Services"),
    ("logs.index", "Logs"),
    ("settings.index", "Settings"),
]


def visible(app: Flask) -> list[tuple[str, str]]:
    return [(endpoint, label) for endpoint, label in NAV if endpoint in app.view_functions]


def links(app: Flask) -> list[tuple[str, str, str]]:
    """``(href, endpoint, label)`` for the bar, built once per script root (the prefix nginx may
    send in X-Forwarded-Prefix) instead of nine url_for calls on every page."""
    cache: dict[str, list[tuple[str, str, str]]] = app.extensions.setdefault("comfypod.nav", {})
    root = request.script_root
    if root not in cache:
        if len(cache) >= 8:  # nginx always sends one prefix; never let odd headers grow this
            cache.clear()
        cache[root] = [(url_for(endpoint), endpoint, label) for endpoint, label in visible(app)]
    return cache[root]
