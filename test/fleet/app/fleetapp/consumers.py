import socket

from channels.generic.websocket import WebsocketConsumer


class EchoConsumer(WebsocketConsumer):
    """Sends every text frame back, prefixed with the host that answered."""

    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=f"{socket.gethostname()}:{text_data}")
