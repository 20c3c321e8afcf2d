import socket

from celery import shared_task

from .models import Job, Tick


@shared_task
def record_job(token):
    Job.objects.get_or_create(token=token, defaults={"host": socket.gethostname()})


@shared_task
def tick():
    Tick.objects.create(host=socket.gethostname())
