from django.urls import path

from . import views

urlpatterns = [
    # site.health_check_path (default /health-check/): what the load balancer checks.
    path("health-check/", views.health_check),
    path("client/", views.client),
    # The same view under site.websocket_path (default /ws/), where nginx sends requests to
    # daphne: what the client address looks like to the ASGI server.
    path("ws/client/", views.client),
]
