"""Kamailio front (issue 16): in-dialog requests are relayed only between callers and intake nodes. A
request with a To-tag and a foreign ``Route`` header (next hop: any other machine or port) is answered 403
and never reaches that target; the same request whose next hop is an intake node is relayed, and an intake
node may still send in-dialog requests towards its caller. Real Kamailio with the shipped config; the
"intake node" and the "victim" are UDP sockets of the test, so every datagram Kamailio sends is seen."""

from __future__ import annotations

import re
import socket
import time
import uuid
from pathlib import Path

from ha_support import KamailioFront, free_port


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    return sock


def in_dialog(method: str, sender: socket.socket, target: str, routes: list[str], call_id: str) -> bytes:
    host, port = sender.getsockname()
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:+420603111222@{host}>;tag=caller-tag",
        f"To: <sip:155@{host}>;tag=node-tag",
        f"Call-ID: {call_id}",
        f"CSeq: 2 {method}",
        f"Contact: <sip:+420603111222@{host}:{port}>",
        *(f"Route: {r}" for r in routes),
    ]
    body = b"hello" if method == "MESSAGE" else b""
    if body:
        lines.append("Content-Type: text/plain")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def received(sock: socket.socket, seconds: float) -> list[bytes]:
    """Every datagram but Kamailio's OPTIONS probes, for ``seconds``."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if not data.startswith(b"OPTIONS "):
            got.append(data)
    return got


def status_of(replies: list[bytes]) -> list[int]:
    return [int(m.group(1)) for r in replies if (m := re.match(rb"SIP/2.0 (\d{3})", r))]


def wait_until_answering(sock: socket.socket, kamailio: tuple[str, int], timeout_s: float = 20.0) -> None:
    """ "Listening on" is logged before the workers read the socket: ask with OPTIONS until one answers."""
    host, port = sock.getsockname()
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        n += 1
        probe = (
            f"OPTIONS sip:{kamailio[0]}:{kamailio[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bKready{n};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag=p{n}\r\nTo: <sip:{kamailio[0]}>\r\n"
            f"Call-ID: ready-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(probe.encode(), kamailio)
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if data.startswith(b"SIP/2.0 200"):
            return
    raise AssertionError("Kamailio never answered OPTIONS")


def test_in_dialog_requests_go_only_to_intake_nodes(tmp_path: Path) -> None:
    node, victim, caller = udp_socket(), udp_socket(), udp_socket()
    node_address = f"127.0.0.1:{node.getsockname()[1]}"
    victim_address = f"127.0.0.1:{victim.getsockname()[1]}"
    front = KamailioFront(
        tmp_path / "kamailio", [node_address], port=free_port("127.0.0.1", socket.SOCK_DGRAM)
    ).start()
    ours = f"<sip:127.0.0.1:{front.port};lr>"
    kamailio = ("127.0.0.1", front.port)
    try:
        wait_until_answering(caller, kamailio)
        # 1. A foreign Route after ours: refused, nothing reaches the victim.
        for method in ("MESSAGE", "INVITE", "BYE"):
            caller.sendto(
                in_dialog(
                    method,
                    caller,
                    f"sip:x@{victim_address}",
                    [ours, f"<sip:{victim_address};lr>"],
                    f"a-{method}",
                ),
                kamailio,
            )
            assert 403 in status_of(received(caller, 2.0)), (method, front.log_tail())
        # 2. A foreign first Route (not even us) and a plain R-URI to the victim without Route: refused.
        caller.sendto(
            in_dialog("MESSAGE", caller, f"sip:x@{victim_address}", [f"<sip:{victim_address};lr>"], "b"),
            kamailio,
        )
        assert 403 in status_of(received(caller, 2.0)), front.log_tail()
        caller.sendto(in_dialog("MESSAGE", caller, f"sip:x@{victim_address}", [ours], "c"), kamailio)
        assert 403 in status_of(received(caller, 2.0)), front.log_tail()
        assert received(victim, 0.5) == [], "Kamailio relayed an in-dialog request to a non-intake target"

        # 3. The caller's in-dialog request to the intake node (R-URI = the node's Contact) is relayed.
        caller.sendto(in_dialog("MESSAGE", caller, f"sip:155@{node_address}", [ours], "d"), kamailio)
        at_node = received(node, 1.5)
        assert any(m.startswith(b"MESSAGE ") and b"Call-ID: d" in m for m in at_node), front.log_tail()

        # 4. The intake node's in-dialog request towards its caller is relayed (BYE from the node).
        caller_address = f"127.0.0.1:{caller.getsockname()[1]}"
        node.sendto(in_dialog("BYE", node, f"sip:+420603111222@{caller_address}", [ours], "e"), kamailio)
        at_caller = received(caller, 1.5)
        assert any(m.startswith(b"BYE ") and b"Call-ID: e" in m for m in at_caller), front.log_tail()
        assert received(victim, 0.2) == []
    finally:
        front.stop()
        for sock in (node, victim, caller):
            sock.close()
