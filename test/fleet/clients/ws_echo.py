#!/usr/bin/env python3
"""One WebSocket round trip over TLS with the standard library only (the test's outside client):
ws_echo.py HOST ADDRESS PORT PATH CAFILE MESSAGE -> prints the text frame the server sent back."""
import base64
import os
import socket
import ssl
import struct
import sys

host, address, port, path, cafile, message = sys.argv[1:7]
context = ssl.create_default_context(cafile=cafile)
raw = socket.create_connection((address, int(port)), timeout=15)
conn = context.wrap_socket(raw, server_hostname=host)
key = base64.b64encode(os.urandom(16)).decode()
conn.sendall(
    (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: https://{host}\r\n\r\n").encode()
)
head = b""
while b"\r\n\r\n" not in head:
    chunk = conn.recv(1)
    if not chunk:
        sys.exit(f"closed during the handshake: {head!r}")
    head += chunk
status = head.split(b"\r\n", 1)[0]
if b" 101 " not in status:
    sys.exit(f"no upgrade: {head.decode(errors='replace')}")
payload = message.encode()
mask = os.urandom(4)
frame = bytes([0x81]) + (bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack("!H", len(payload)))
conn.sendall(frame + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def read(n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            sys.exit("closed before a frame arrived")
        data += chunk
    return data


first, second = read(2)
length = second & 0x7F
if length == 126:
    length = struct.unpack("!H", read(2))[0]
elif length == 127:
    length = struct.unpack("!Q", read(8))[0]
body = read(length)
if first & 0x0F != 1:
    sys.exit(f"not a text frame: opcode {first & 0x0F}")
print(body.decode())
