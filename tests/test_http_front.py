"""The HTTP front under hostile input: every malformed request gets a 4xx before Bolt reads it, idle
connections are dropped, trickling ones too once their request's deadline passes, and connections past
the cap (in all, or from one address) are refused rather than given a thread each."""

from __future__ import annotations

import http.client
import itertools
import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.server import MAX_BODY_BYTES, HttpServer, wsgi_app
from fakes.bot_server import SECRET
from fakes.slack_api import sign


def raw_post(bot, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", bot.server.port, timeout=10)
    connection.request("POST", "/slack/events", body=body, headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read().decode()


def signed(body: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **sign(SECRET, body)}


@pytest.mark.parametrize(("body", "headers", "status", "reason"), [
    (b"\xff\xfe not utf-8", {"Content-Type": "application/json"}, 400, "not UTF-8"),
    (("[" * 50_000 + "]" * 50_000).encode(), {"Content-Type": "application/json"}, 400, "nested too deeply"),
    (b"{}", {"Content-Type": "application/json", "X-Slack-Request-Timestamp": "soon",
             "X-Slack-Signature": "v0=00"}, 400, "Timestamp is not a number"),
])
def test_malformed_requests_get_a_4xx_not_a_traceback(bot, body, headers, status, reason, caplog):
    answer_status, answer = raw_post(bot, body, headers)
    assert answer_status == status and reason in answer
    assert "Traceback" not in caplog.text


def test_a_body_over_the_limit_is_refused_unread_and_never_logged(bot, caplog):
    with socket.create_connection(("127.0.0.1", bot.server.port), timeout=10) as raw:
        raw.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {30 * 1024 * 1024}\r\n\r\n".encode() + b"A" * 4096)
        answer = raw.recv(4096).decode()
    assert answer.startswith("HTTP/1.0 413") or answer.startswith("HTTP/1.1 413")
    assert "AAAA" not in caplog.text and f"body over {MAX_BODY_BYTES} bytes" in caplog.text


def test_a_signed_event_still_reaches_bolt(bot):
    body = json.dumps({"type": "url_verification", "challenge": "abc"})
    assert raw_post(bot, body.encode(), signed(body)) == (200, '{"challenge": "abc"}')


def test_idle_connections_are_dropped_and_connections_past_the_cap_refused():
    server = HttpServer(None, lambda: {"status": "ok"}, host="127.0.0.1", port=0, max_connections=3,
                        read_timeout_s=0.5).start()
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
            assert extra.recv(100).startswith(b"HTTP/1.1 503")  # no thread for a fourth
        for sock in idle:  # each idle one times out and is closed, freeing its slot
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed by the server
            sock.close()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        server.stop()


def healthz(port: int, source: str = "127.0.0.1") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    finally:
        connection.close()


def trickle(sock: socket.socket, every_s: float, stop: threading.Event) -> float | None:
    """Sends a request a byte every `every_s`, headers without end, until the server hangs up: returns
    when it did (time.monotonic()), or None once `stop` is set."""
    for byte in itertools.chain(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", itertools.repeat(ord("a"))):
        if stop.is_set():
            return None
        try:
            sock.sendall(bytes([byte]))
            if select.select([sock], [], [], every_s)[0]:  # the pause between bytes, cut short by a hang-up
                assert sock.recv(100) == b"", "the server answered a request it never got"
                return time.monotonic()
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic()
    raise AssertionError("unreachable")


def test_trickling_clients_are_capped_per_address_and_dropped_at_the_deadline():
    deadline_s, trickled = 1.0, "127.0.0.2"  # all of 127.0.0.0/8 is this machine on Linux
    server = HttpServer(None, lambda: {"status": "ok"}, host="127.0.0.1", port=0, max_connections=3,
                        max_per_address=2, request_deadline_s=deadline_s).start()
    stop = threading.Event()
    tricklers = []
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            try:
                started = time.monotonic()
                for _ in range(2):
                    tricklers.append(socket.create_connection(("127.0.0.1", server.port), timeout=5,
                                                              source_address=(trickled, 0)))
                dropped = [pool.submit(trickle, sock, 0.05, stop) for sock in tricklers]
                with socket.create_connection(("127.0.0.1", server.port), timeout=5,
                                              source_address=(trickled, 0)) as third:
                    assert third.recv(100).startswith(b"HTTP/1.1 503")  # past the address's cap...
                    assert third.recv(100) == b""  # ...and closed at once
                assert healthz(server.port) == 200  # the last slot, from another address
                assert not any(future.done() for future in dropped)  # the tricklers still hold theirs
                for future in dropped:
                    when = future.result(timeout=deadline_s + 5)
                    assert when is not None and when - started >= deadline_s * 0.9
                assert healthz(server.port, trickled) == 200  # their slots are free again
            finally:
                stop.set()
    finally:
        for sock in tricklers:
            sock.close()
        server.stop()


def test_the_deadline_bounds_reading_a_request_not_answering_it():
    def slow_health():
        time.sleep(0.6)
        return {"status": "ok"}

    server = HttpServer(None, slow_health, host="127.0.0.1", port=0, request_deadline_s=0.3).start()
    try:
        assert healthz(server.port) == 200
    finally:
        server.stop()


def test_the_wsgi_app_without_bolt_answers_health_and_404():
    app = wsgi_app(None, lambda: {"status": "ok"})
    seen = []
    body = b"".join(app({"PATH_INFO": "/slack/events", "REQUEST_METHOD": "POST"}, lambda s, h: seen.append(s)))
    assert seen == ["404 Not Found"] and body == b"Not Found"
