"""The platform's MQTT subscriber: stores every message under devices/ in the database."""
import logging
import socket

from django.conf import settings

log = logging.getLogger(__name__)


def start_subscriber():
    import paho.mqtt.client as mqtt

    def on_connect(client, userdata, flags, reason, properties=None):
        client.subscribe("devices/#", qos=1)

    def on_message(client, userdata, message):
        from django.db import close_old_connections

        from .models import DeviceMessage

        close_old_connections()
        DeviceMessage.objects.create(topic=message.topic, payload=message.payload.decode("utf-8", "replace"), host=socket.gethostname())

    try:  # paho-mqtt 2 asks which callback signatures the caller uses
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleetapp-{socket.gethostname()}")
    except AttributeError:
        client = mqtt.Client(client_id=f"fleetapp-{socket.gethostname()}")
    conf = settings.MQTT
    client.username_pw_set(conf["username"], conf["password"])
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect_async(conf["host"], conf["port"])
    client.loop_start()
    log.info("MQTT subscriber started for %s:%s", conf["host"], conf["port"])
    return client
