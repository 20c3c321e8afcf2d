import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleetapp.settings")
app = Celery("fleetapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["fleetapp"])


@worker_ready.connect
def start_mqtt_subscriber(**_):
    # The worker host also stores what devices publish: one subscriber thread per worker.
    from .mqtt import start_subscriber

    start_subscriber()
