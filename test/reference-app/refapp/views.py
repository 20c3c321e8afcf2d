"""The reference app's views: the health check, and the client address as the app sees it."""
import json

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse


def health_check(request):
    return HttpResponse("ok", content_type="text/plain")


def client(request):
    """What the proxies told the app about the client: REMOTE_ADDR, X-Forwarded-For and the
    scheme (is_secure() follows SECURE_PROXY_SSL_HEADER), and which interface served it:
    "asgi" under daphne, "wsgi" under gunicorn."""
    body = {
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "x_forwarded_for": request.META.get("HTTP_X_FORWARDED_FOR"),
        "secure": request.is_secure(),
        "interface": "asgi" if isinstance(request, ASGIRequest) else "wsgi",
    }
    return HttpResponse(json.dumps(body, sort_keys=True), content_type="application/json")
