"""The WSGI entry point gunicorn loads: ``admin.wsgi:app``."""

from admin import create_app
from services.logs import settings_secrets, setup_logging
from services.settings import load_settings

settings = load_settings()
setup_logging(settings.log_level, settings_secrets(settings))
app = create_app(settings)
