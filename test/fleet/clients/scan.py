#!/usr/bin/env python3
"""Which of the given ADDRESS:PORT targets accept a TCP connection (all tried at once, so a scan
takes one timeout: a port a firewall drops times out, a closed one refuses). Prints the open
ones, one per line."""
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def is_open(target):
    address, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((address, int(port)), timeout=2):
            return True
    except OSError:
        return False


targets = sys.argv[1:]
with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
    for target, ok in zip(targets, pool.map(is_open, targets)):
        if ok:
            print(target)
