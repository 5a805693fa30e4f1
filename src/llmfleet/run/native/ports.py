"""Whether a local port is free."""

from __future__ import annotations

import socket

from llmfleet.run.native.services import HOST


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT is free to listen on
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True
