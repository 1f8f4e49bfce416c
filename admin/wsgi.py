"""The WSGI entry point gunicorn loads: ``admin.wsgi:app``."""

from admin import create_app

app = create_app()
