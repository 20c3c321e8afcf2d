from django.urls import path

from . import views

urlpatterns = [
    path("health-check/", views.health_check),
    path("whoami/", views.whoami),
    path("enqueue/<slug:token>/", views.enqueue),
    path("jobs/<slug:token>/", views.job),
    path("ticks/", views.ticks),
    path("messages/", views.messages),
]
