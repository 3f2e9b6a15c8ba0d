"""Whether an address is one of this machine's: the kernel lets a socket bind only to those."""

from __future__ import annotations

import socket


def is_local_address(address: str) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True
