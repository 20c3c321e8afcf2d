import socket

from django.http import HttpResponse, JsonResponse

from .models import DeviceMessage, Job, Tick
from .tasks import record_job

# The release this host serves: the fleet's update check looks for it in the answers.
RELEASE = "1"


def health_check(request):
    return HttpResponse("ok\n", content_type="text/plain")


def whoami(request):
    return JsonResponse({"host": socket.gethostname(), "release": RELEASE, "secure": request.is_secure()})


def enqueue(request, token):
    record_job.delay(token)
    return JsonResponse({"queued": token, "host": socket.gethostname()}, status=202)


def job(request, token):
    found = Job.objects.filter(token=token).first()
    return JsonResponse({"token": token, "host": found.host if found else None})


def ticks(request):
    return JsonResponse({"ticks": [[t.host, t.created.timestamp()] for t in Tick.objects.order_by("created")]})


def messages(request):
    return JsonResponse({"messages": [[m.topic, m.payload, m.host] for m in DeviceMessage.objects.order_by("id")]})
