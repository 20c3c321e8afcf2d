from django.apps import AppConfig


class FleetAppConfig(AppConfig):
    name = "fleetapp"
