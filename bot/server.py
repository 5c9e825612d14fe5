"""Serving the Bolt app: an HTTP server (events, interactivity and the slash command at `/slack/events`,
plus `GET /healthz`), or Socket Mode with the same health endpoint beside it.

The HTTP server is the standard library's WSGI server with a thread per request, so a slow
handler never delays another request's acknowledgement.
"""

from __future__ import annotations

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


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def wsgi_app(slack: App | None, health: Health) -> Callable[..., Iterable[bytes]]:
    bolt = SlackRequestHandler(slack) if slack is not None else None

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            body = json.dumps(health(), default=str).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if bolt is not None and environ.get("PATH_INFO") == "/slack/events":
            return bolt(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]

    return application


class HttpServer:
    """Runs in a background thread; `port` is the bound port (pass 0 for a free one)."""

    def __init__(self, slack: App | None, health: Health, *, host: str = "0.0.0.0", port: int = 3000) -> None:
        self._server = make_server(host, port, wsgi_app(slack, health), server_class=_ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self.port = self._server.server_port
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
