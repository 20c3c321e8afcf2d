"""
Settings of the reference app, read from the environment the rendered .env gives the units
(systemd's EnvironmentFile=), the way a NovaCloud settings.py reads it: every value a string,
booleans parsed explicitly (bool("False") is True), lists comma-separated. On top of that, the
settings `manage.py check --deploy` asks for, so that the app behaves like production behind
the rendered proxies: it redirects plain HTTP to HTTPS unless X-Forwarded-Proto says https.
"""
import os
from urllib.parse import urlsplit


def env_bool(name, default="False"):
    return os.environ.get(name, default).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name):
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


DEBUG = env_bool("DEBUG")
SECRET_KEY = os.environ["SECRET_KEY"]
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
# The .env writes origins with their scheme (Django 4.0+); Django 3.2, Debian 12's, compares
# CSRF_TRUSTED_ORIGINS with host names, so the scheme is dropped for it.
CSRF_TRUSTED_ORIGINS = [urlsplit(o).netloc or o for o in env_list("CSRF_TRUSTED_ORIGINS")]

ROOT_URLCONF = "refapp.urls"
WSGI_APPLICATION = "refapp.wsgi.application"
ASGI_APPLICATION = "refapp.asgi.application"
INSTALLED_APPS = ["django.contrib.staticfiles"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Behind nginx (and HAProxy): the proxy that terminates TLS sets X-Forwarded-Proto and
# overwrites any client value, so Django may trust it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = 63072000
# includeSubDomains and preload are the model's choice (site.hsts), and nginx sends that header
# while hiding the app's copy: Django's advice on them does not apply here.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]

# The views need no database; DATABASES is what the guide's settings build from DB_* (nothing
# connects to it unless a view asks).
DATABASES = {
    "default": {
        "ENGINE": os.environ.get("DB_ENGINE", "django.db.backends.postgresql"),
        "NAME": os.environ.get("DB_NAME", ""),
        "USER": os.environ.get("DB_USER", ""),
        "PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "HOST": os.environ.get("DB_HOST", ""),
        "PORT": os.environ.get("DB_PORT", ""),
        "OPTIONS": {"sslmode": os.environ["DB_SSLMODE"]} if os.environ.get("DB_SSLMODE") else {},
    }
}

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT")
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("MEDIA_ROOT")

USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
