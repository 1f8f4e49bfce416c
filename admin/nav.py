"""The navigation bar: one entry per area page, shown only when its endpoint exists."""

from __future__ import annotations

from flask import Flask

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
