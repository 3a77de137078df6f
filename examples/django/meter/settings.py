"""Settings of the usage-metering example (seed 004). No admin, no auth: a JSON API only."""
import os

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["usage"]
MIDDLEWARE = []  # no sessions, no CSRF: the tenant comes from the X-Tenant header
ROOT_URLCONF = "meter.urls"
WSGI_APPLICATION = "meter.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3
        "NAME": os.environ.get("PGDATABASE", "example_django"),
        # The app connects as a non-superuser role holding quota_app; test.sh runs
        # `migrate` as the owner (DJANGO_DB_USER=postgres) and grants DML to the app role.
        "USER": os.environ.get("DJANGO_DB_USER", "django_meter"),
        "HOST": os.environ.get("PGHOST", ""),  # a Unix socket directory or 127.0.0.1
        "PORT": os.environ.get("PGPORT", ""),
        # Persistent connections: one connection serves request after request, which is
        # why the tenant is set with set_config(..., true) and never with a plain SET.
        "CONN_MAX_AGE": 600,
    }
}

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"usage": {"handlers": ["console"], "level": "INFO"}},
}
