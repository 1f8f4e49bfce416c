"""Jinja filters for people: sizes, durations, ages."""

from __future__ import annotations

import time

from flask import Flask

from presets.validate import format_size


def filesize(value: float | int | None) -> str:
    """1536 -> '1.5 KiB': binary units, as the catalog, the CLI, nvidia-smi and df count."""
    return format_size(value)


def duration(seconds: float | int | None) -> str:
    """3725 -> '1h 2m'; None -> '–'."""
    if seconds is None:
        return "–"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def ago(timestamp: float | int | None) -> str:
    if not timestamp:
        return "–"
    return duration(max(0.0, time.time() - float(timestamp))) + " ago"


def percent(done: float | int | None, total: float | int | None) -> float:
    if not total or done is None:
        return 0.0
    return max(0.0, min(100.0, 100.0 * float(done) / float(total)))


def register(app: Flask) -> None:
    app.add_template_filter(filesize)
    app.add_template_filter(duration)
    app.add_template_filter(ago)
    app.add_template_global(percent)
