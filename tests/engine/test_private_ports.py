"""Private ports are chosen outside the kernel's ephemeral range, where no outgoing
connection on the machine can take one between its choice and the release's bind."""

from __future__ import annotations

import socket

from dployr.engine.os import ports


def test_a_private_port_is_free_and_never_ephemeral() -> None:
    low, high = ports.ephemeral_range()
    chosen = [ports.allocate() for _ in range(200)]
    assert len(set(chosen)) == len(chosen)  # none handed out twice in a row
    for port in chosen:
        assert not low <= port <= high, (port, low, high)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free when handed out


def test_a_port_in_use_is_never_handed_out() -> None:
    taken = []
    try:
        for port in ports.private_range()[:512]:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sock.listen()
            taken.append(sock)
        held = {sock.getsockname()[1] for sock in taken}
        for _ in range(200):
            assert ports.allocate() not in held
    finally:
        for sock in taken:
            sock.close()


def test_the_range_lies_below_or_above_the_ephemeral_one() -> None:
    low, high = ports.ephemeral_range()
    private = ports.private_range()
    assert len(private) >= 1024
    assert private.stop <= low or private.start > high
    assert private.start >= 1024
    assert private.stop <= 65536
