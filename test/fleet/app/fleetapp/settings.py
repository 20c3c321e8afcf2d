"""
Settings of the fleet's reference app, read from the rendered .env the way a NovaCloud
settings.py reads it (systemd's EnvironmentFile=): every value a string, booleans parsed
explicitly, lists comma-separated; Redis through the sentinels the .env names; production
settings (`manage.py check --deploy` is clean).
"""
import os
from urllib.parse import quote


def env_bool(name, default="False"):
    return os.environ.get(name, default).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name):
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


DEBUG = env_bool("DEBUG")
SECRET_KEY = os.environ["SECRET_KEY"]
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

ROOT_URLCONF = "fleetapp.urls"
WSGI_APPLICATION = "fleetapp.wsgi.application"
ASGI_APPLICATION = "fleetapp.asgi.application"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.staticfiles", "fleetapp"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Behind HAProxy and nginx, which set X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = 63072000
# includeSubDomains/preload are the model's (site.hsts); nginx sends that header.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]

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

# Celery through Redis Sentinel, as the .env's comment says.
REDIS_PASSWORD = os.environ.get("REDIS_PASSWORD", "")
SENTINELS = env_list("REDIS_SENTINELS")
if SENTINELS:
    CELERY_BROKER_URL = ";".join(f"sentinel://:{quote(REDIS_PASSWORD, safe='')}@{s}/0" for s in SENTINELS)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "master_name": os.environ["REDIS_SENTINEL_MASTER"],
        "sentinel_kwargs": {"password": REDIS_PASSWORD},
    }
else:
    CELERY_BROKER_URL = os.environ.get("REDIS_URL", "")
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The periodic task: once per period across the fleet (beat runs on one host).
TICK_SECONDS = float(os.environ.get("FLEET_TICK_SECONDS", "10"))
CELERY_BEAT_SCHEDULE = {"tick": {"task": "fleetapp.tasks.tick", "schedule": TICK_SECONDS}}

MQTT = {
    "host": os.environ.get("MQTT_BROKER_HOST", "127.0.0.1"),
    "port": int(os.environ.get("MQTT_BROKER_PORT", "1883")),
    "username": os.environ.get("MQTT_USERNAME", ""),
    "password": os.environ.get("MQTT_PASSWORD", ""),
}

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT")
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("MEDIA_ROOT")

USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False, "handlers": {"console": {"class": "logging.StreamHandler"}}, "root": {"handlers": ["console"], "level": "INFO"}}
