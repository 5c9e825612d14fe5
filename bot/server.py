"""Serving the Bolt app: an HTTP server (events, interactivity and the slash command at `/slack/events`,
plus `GET /healthz`), or Socket Mode with the same health endpoint beside it.

The HTTP server is the standard library's WSGI server with a thread per connection, so a slow
handler never delays another request's acknowledgement; connections are capped (503 past the cap)
and a connection that sends nothing is dropped after `READ_TIMEOUT_S`, so idle sockets cannot
exhaust it. Requests Bolt would fail on with a 500 (a body over `MAX_BODY_BYTES`, not UTF-8,
nested past what a parser follows, a timestamp that is not a number) get a 4xx before Bolt reads
them, and their bodies are never logged.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

log = logging.getLogger(__name__)

Health = Callable[[], dict[str, Any]]
Metrics = Callable[[], bytes]  # the Prometheus exposition, for GET /metrics
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are a few kB; a view submission at most tens
READ_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 256  # a thread each: about 8 MB of address space, little memory
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    max_connections = MAX_CONNECTIONS
    request_queue_size = 128  # the listen backlog: the default 5 resets connections under a burst

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(_BUSY)
            finally:
                self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _QuietHandler(WSGIRequestHandler):
    timeout = READ_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _refusal(environ: dict[str, Any]) -> tuple[str, str] | None:
    """(status, reason) for a request to /slack/events that Bolt must not see, else None; the body
    is read here (at most `MAX_BODY_BYTES`) and handed on in a fresh stream."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "400 Bad Request", "Content-Length is not a number"
    if length < 0 or length > MAX_BODY_BYTES:
        return "413 Content Too Large", f"body over {MAX_BODY_BYTES} bytes"
    timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP")
    if timestamp is not None and not timestamp.strip().isdigit():
        return "400 Bad Request", "X-Slack-Request-Timestamp is not a number"
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        text = body.decode("utf-8")
        if text.lstrip().startswith(("{", "[")):
            json.loads(text)
    except UnicodeDecodeError:
        return "400 Bad Request", "body is not UTF-8"
    except RecursionError:
        return "400 Bad Request", "JSON nested too deeply"
    except ValueError:
        pass  # malformed JSON: Bolt answers that itself
    return None


def wsgi_app(slack: App | None, health: Health, metrics: Metrics | None = None) -> Callable[..., Iterable[bytes]]:
    bolt = SlackRequestHandler(slack) if slack is not None else None

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if metrics is not None and environ.get("PATH_INFO") == "/metrics" and environ.get("REQUEST_METHOD") == "GET":
            body = metrics()
            start_response("200 OK", [("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            state = health()
            body = json.dumps(state, default=str).encode()
            status = "200 OK" if state.get("status", "ok") == "ok" else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if bolt is not None and environ.get("PATH_INFO") == "/slack/events":
            refused = _refusal(environ)
            if refused is not None:
                status, reason = refused
                log.warning("refused a request to /slack/events: %s", reason)
                start_response(status, [("Content-Type", "text/plain")])
                return [reason.encode()]
            return bolt(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]

    return application


class HttpServer:
    """Runs in a background thread; `port` is the bound port (pass 0 for a free one)."""

    def __init__(self, slack: App | None, health: Health, *, host: str = "0.0.0.0", port: int = 3000,
                 max_connections: int = MAX_CONNECTIONS, metrics: Metrics | None = None) -> None:
        server_class = type("_Capped", (_ThreadingWSGIServer,), {"max_connections": max_connections})
        self._server: WSGIServer = make_server(host, port, wsgi_app(slack, health, metrics), server_class=server_class,
                                   handler_class=_QuietHandler)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="switchboard-http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_socket_mode(slack: App, app_token: str) -> Any:
    """Connects to Slack over Socket Mode; returns the handler (`close()` it to stop)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(slack, app_token=app_token)
    handler.connect()
    return handler
