from django.db import models


class Job(models.Model):
    """A Celery task's run: which request queued it and which host ran it."""

    token = models.CharField(max_length=64, unique=True)
    host = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)


class Tick(models.Model):
    """One run of the periodic task."""

    host = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)


class DeviceMessage(models.Model):
    """What a device published, stored by the platform's subscriber."""

    topic = models.CharField(max_length=255)
    payload = models.TextField()
    host = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
