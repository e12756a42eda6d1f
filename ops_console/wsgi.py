"""WSGI entry point for gunicorn: ``gunicorn ops_console.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ops_console.settings")
application = get_wsgi_application()
