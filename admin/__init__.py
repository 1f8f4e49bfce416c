"""The admin web app: ``create_app(settings=None)`` builds the Flask application."""

from __future__ import annotations

from flask import Flask

from services.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__)
    app.extensions["comfypod.settings"] = settings

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app
