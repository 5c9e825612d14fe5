"""A loopback test fixture speaking the Slack Web API (HTTP) and Socket Mode (WebSocket) on 127.0.0.1.

    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        client.chat_postMessage(channel="C1", text="hi")
        assert slack.wait_for("chat.postMessage")[0].body["text"] == "hi"

Every Web API call is recorded as a `Call` and answered in Slack's shapes (`auth.test`, `chat.*`, `views.*`,
`conversations.history` and `conversations.replies` over the messages it holds, `usergroups.users.list`
and `conversations.members` (paged) over the members a test sets (`set_usergroup`, `set_members`), the three steps of
`files_upload_v2`, `apps.connections.open`; `{"ok": true}` for any other method); failures can be
scripted with `rate_limit`, `fail` and `slow`, each for every call to a method or only those a
predicate on the call's body picks (`when=lambda body: body["channel"] == "C1"`).
`socket_mode()` adds a standard-library WebSocket server
(RFC 6455) that slack_sdk's built-in `SocketModeClient` connects to: it says hello, answers pings, and lets a
test send envelopes and wait for their acks. POSTs to `slack.response_url` (Bolt's `respond()`) are recorded
as calls to "response_url". `sign`, `event_body`, `command_body` and `action_body` build signed requests for
Bolt over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlencode, urlsplit

TEAM_ID, APP_ID = "T0FAKE", "A0FAKE"
JSON_FIELDS = frozenset({"blocks", "attachments", "view", "files", "metadata"})  # JSON strings in form bodies
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, CLOSE, PING, PONG = 0x0, 0x1, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Call:
    """One Web API call as the fake received it (method "response_url" for POSTs to `slack.response_url`)."""

    method: str
    body: dict[str, Any]
    token: str | None
    at: float
    status: int = 200  # 429 for a scripted rate limit
    ok: bool = True  # False for a scripted failure


def _always(body: dict[str, Any]) -> bool:
    return True


def parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    """A request body as slack_sdk sends it: JSON, or a form whose JSON-valued fields are decoded."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        return json.loads(raw or b"{}")
    return parse_form(raw.decode())


def parse_form(text: str) -> dict[str, Any]:
    form = dict(parse_qsl(text, keep_blank_values=True))
    return {k: json.loads(v) if k in JSON_FIELDS and v[:1] in "[{" else v for k, v in form.items()}


def require(body: dict[str, Any], *names: str) -> None:
    """Raise KeyError for the first missing or empty argument (answered as `invalid_arguments`)."""
    if missing := next((name for name in names if not body.get(name)), None):
        raise KeyError(missing)


class FakeSlack:
    """`with FakeSlack() as slack:` then point `WebClient(base_url=slack.base_url)` at it."""

    def __init__(self, *, bot_user_id: str = "UBOT", bot_id: str = "BBOT", host: str = "127.0.0.1") -> None:
        """`host`: the address to listen on ("0.0.0.0" for containers reaching it through the host's gateway)."""
        self.bot_user_id, self.bot_id = bot_user_id, bot_id
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message posted
        self.uploaded: dict[str, bytes] = {}  # file id -> the bytes POSTed to its upload_url
        self.socket_connected = threading.Event()  # set while a Socket Mode client is connected
        self.slowed: list[float] = []  # when each scripted delay began (time.monotonic())
        self._calls: list[Call] = []
        self._received: list[dict[str, Any]] = []  # messages from Socket Mode clients (acks)
        self._limits: dict[str, list[int]] = {}
        self._failures: dict[str, list[tuple[str, Callable[[dict[str, Any]], bool]]]] = {}
        self._delays: dict[str, list[tuple[float, Callable[[dict[str, Any]], bool]]]] = {}
        self._files: dict[str, dict[str, Any]] = {}  # file id -> name and size announced
        self._usergroups: dict[str, list[str]] = {}  # user group id -> its members (`set_usergroup`)
        self._members: dict[str, list[str]] = {}  # channel id -> its members (`set_members`)
        self._counter = itertools.count(1)
        self._last_ts = 0.0
        self._cond = threading.Condition()
        self._ws: _SocketModeServer | None = None
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/"

    @property
    def response_url(self) -> str:
        return f"{self.origin}/commands/{TEAM_ID}/1/fake"

    def __enter__(self) -> FakeSlack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
        self._server.shutdown()
        self._server.server_close()

    # -- the record
    @property
    def calls(self) -> list[Call]:
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        with self._cond:
            if self._cond.wait_for(lambda: len(self.calls_to(method)) >= count, timeout):
                return self.calls_to(method)
            seen = ", ".join(f"{c.method}[{c.status}]" for c in self._calls) or "none"
        raise AssertionError(f"expected {count} call(s) to {method} within {timeout}s; calls seen: {seen}")

    def reset(self) -> None:
        """Forget the recorded calls and Socket Mode acks (posted messages and uploads stay)."""
        with self._cond:
            self._calls.clear()
            self._received.clear()

    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    # -- scripted failures
    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls to `method` get HTTP 429 with `Retry-After: retry_after`."""
        with self._cond:
            self._limits.setdefault(method, []).extend([retry_after] * times)

    def fail(self, method: str, error: str = "not_in_channel", times: int = 1,
             when: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """The next `times` calls to `method` (those `when` picks) get HTTP 200 with `{"ok": false, "error": error}`."""
        with self._cond:
            self._failures.setdefault(method, []).extend([(error, when or _always)] * times)

    def slow(self, method: str, seconds: float, times: int = 1,
             when: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """The next `times` calls to `method` (those `when` picks) are answered after `seconds`: the call
        is recorded, and takes effect, only once the delay has passed, as a slow Slack would do it.
        `slowed` holds when each delay began."""
        with self._cond:
            self._delays.setdefault(method, []).extend([(seconds, when or _always)] * times)

    def add_message(self, channel: str, message: dict[str, Any]) -> None:
        """A message someone else posted (a customer's), so that history and thread reads find it."""
        with self._cond:
            self.messages[(channel, message["ts"])] = dict(message)

    def set_usergroup(self, group: str, users: list[str]) -> None:
        """The members `usergroups.users.list` gives for `group` from now on (an unknown group: `no_such_subteam`)."""
        with self._cond:
            self._usergroups[group] = list(users)

    def set_members(self, channel: str, members: list[str]) -> None:
        """The members `conversations.members` pages through for `channel` (an unknown one: `channel_not_found`)."""
        with self._cond:
            self._members[channel] = list(members)

    def _scripted(self, table: dict[str, list[tuple[Any, Callable[[dict[str, Any]], bool]]]], method: str,
                  body: dict[str, Any]) -> Any:
        entries = table.get(method) or []
        index = next((i for i, (_, when) in enumerate(entries) if when(body)), None)
        return None if index is None else entries.pop(index)[0]

    # -- the Web API
    def handle(self, method: str, body: dict[str, Any], token: str | None) -> tuple[int, dict, dict[str, str]]:
        """Record one call and answer it: (HTTP status, JSON body, extra headers)."""
        with self._cond:
            delay = self._scripted(self._delays, method, body)
            if delay:
                self.slowed.append(time.monotonic())
        if delay:
            time.sleep(delay)
        with self._cond:
            retry_after = self._limits[method].pop(0) if self._limits.get(method) else None
            error = self._scripted(self._failures, method, body)
        self._record(Call(method, body, token, time.time(), 200 if retry_after is None else 429,
                          ok=retry_after is None and error is None))
        if retry_after is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
        if error is None and token is None and not method.startswith("oauth."):
            error = "not_authed"
        if error is not None:
            return 200, {"ok": False, "error": error}, {}
        answer: Callable[[dict[str, Any], str | None], dict[str, Any]] = getattr(
            self, "_" + method.replace(".", "_"), lambda body, token: {})
        try:
            return 200, {"ok": True, **answer(body, token)}, {}
        except KeyError as missing:  # a required argument (see `require`)
            return 200, {"ok": False, "error": "invalid_arguments",
                         "response_metadata": {"messages": [f"[ERROR] missing required field: {missing.args[0]}"]}}, {}

    def _new_ts(self) -> str:
        """Now, as Slack's ts are, and unique: a microsecond past the last one when two come at once."""
        with self._cond:
            self._last_ts = max(time.time(), self._last_ts + 1e-6)
            return f"{self._last_ts:.6f}"

    def _auth_test(self, body: dict, token: str) -> dict:
        return {"url": "https://fake.slack.com/", "team": "Fake", "user": "switchboard", "team_id": TEAM_ID,
                "user_id": self.bot_user_id, "bot_id": self.bot_id}

    def _chat_postMessage(self, body: dict, token: str) -> dict:
        if not body.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not any(body.get(k) for k in ("text", "blocks", "attachments")):
            return {"ok": False, "error": "no_text"}
        ts, channel = self._new_ts(), body["channel"]
        message = {"type": "message", "text": body.get("text", ""), "user": self.bot_user_id, "bot_id": self.bot_id,
                   "app_id": APP_ID, "team": TEAM_ID, "ts": ts}
        message.update({k: body[k] for k in ("blocks", "attachments", "thread_ts", "metadata") if body.get(k)})
        with self._cond:
            self.messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": message}

    def _chat_update(self, body: dict, token: str) -> dict:
        require(body, "channel", "ts")
        channel, ts = body["channel"], body["ts"]
        with self._cond:
            message = self.messages.get((channel, ts))
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.update({k: body[k] for k in ("text", "blocks", "attachments") if k in body})
            return {"channel": channel, "ts": ts, "text": message["text"], "message": dict(message)}

    def _chat_delete(self, body: dict, token: str) -> dict:
        """As Slack's: a bot token deletes only the bot's own messages (`cant_delete_message` otherwise)."""
        require(body, "channel", "ts")
        channel, ts = body["channel"], body["ts"]
        with self._cond:
            message = self.messages.get((channel, ts))
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            if message.get("bot_id") != self.bot_id:
                return {"ok": False, "error": "cant_delete_message"}
            del self.messages[(channel, ts)]
        return {"channel": channel, "ts": ts}

    def _conversations_replies(self, body: dict, token: str) -> dict:
        require(body, "channel", "ts")
        channel, ts = body["channel"], body["ts"]
        with self._cond:
            thread = [dict(m) for (c, t), m in self.messages.items()
                      if c == channel and (t == ts or m.get("thread_ts") == ts)]
        if not any(m["ts"] == ts for m in thread):
            return {"ok": False, "error": "thread_not_found"}
        thread.sort(key=lambda m: (m["ts"] != ts, float(m["ts"])))
        return {"messages": thread, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _conversations_history(self, body: dict, token: str) -> dict:
        require(body, "channel")
        oldest = float(body.get("oldest") or 0)
        with self._cond:
            top = [dict(m) for (c, t), m in self.messages.items() if c == body["channel"] and float(t) > oldest
                   and m.get("thread_ts") in (None, t)]
        top.sort(key=lambda m: float(m["ts"]), reverse=True)
        limit = int(body.get("limit") or 100)
        return {"messages": top[:limit], "has_more": len(top) > limit, "pin_count": 0,
                "response_metadata": {"next_cursor": ""}}

    def _usergroups_users_list(self, body: dict, token: str) -> dict:
        require(body, "usergroup")
        with self._cond:
            users = self._usergroups.get(body["usergroup"])
        return {"ok": False, "error": "no_such_subteam"} if users is None else {"users": list(users)}

    def _conversations_members(self, body: dict, token: str) -> dict:
        """A page of `limit` members (Slack's default 100) from `cursor`, an opaque offset as Slack's are opaque."""
        require(body, "channel")
        with self._cond:
            members = self._members.get(body["channel"])
        if members is None:
            return {"ok": False, "error": "channel_not_found"}
        try:
            start = int(base64.b64decode(body["cursor"]).decode().removeprefix("offset:")) if body.get("cursor") else 0
        except ValueError:
            return {"ok": False, "error": "invalid_cursor"}
        end = start + int(body.get("limit") or 100)
        cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(members) else ""
        return {"members": members[start:end], "response_metadata": {"next_cursor": cursor}}

    def _chat_postEphemeral(self, body: dict, token: str) -> dict:
        require(body, "channel", "user")
        return {"message_ts": self._new_ts()}

    def _chat_getPermalink(self, body: dict, token: str) -> dict:
        require(body, "channel", "message_ts")
        channel, ts = body["channel"], body["message_ts"]
        return {"channel": channel, "permalink": f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def _views_publish(self, body: dict, token: str) -> dict:
        require(body, "user_id")
        return self._views_open(body, token)

    def _views_open(self, body: dict, token: str) -> dict:  # also views.update and views.push
        view_id = f"V{next(self._counter):010d}"
        return {"view": {"id": view_id, "team_id": TEAM_ID, "state": {"values": {}}, "hash": self._new_ts(),
                         "private_metadata": "", "callback_id": "", "external_id": "", "root_view_id": view_id,
                         "app_id": APP_ID, "bot_id": self.bot_id, **body["view"]}}

    _views_update = _views_push = _views_open

    def _files_getUploadURLExternal(self, body: dict, token: str) -> dict:
        file_id = f"F{next(self._counter):04d}"
        with self._cond:
            self._files[file_id] = {"name": body.get("filename", ""), "size": int(body.get("length", 0))}
        return {"upload_url": f"{self.origin}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, body: dict, token: str) -> dict:
        files = body.get("files") or []
        if any(f.get("id") not in self.uploaded for f in files):
            return {"ok": False, "error": "file_not_found"}
        return {"files": [{**self._files[f["id"]], "id": f["id"], "title": f.get("title", self._files[f["id"]]["name"])}
                          for f in files]}

    def _apps_connections_open(self, body: dict, token: str) -> dict:
        if self._ws is None:
            return {"ok": False, "error": "not_enabled"}
        if not token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"url": f"ws://127.0.0.1:{self._ws.port}/link/?ticket={uuid.uuid4()}&app_id={APP_ID}"}

    # -- Socket Mode
    def socket_mode(self) -> FakeSlack:
        """Start (once) the WebSocket server that `apps.connections.open` points at."""
        with self._cond:
            if self._ws is None:
                self._ws = _SocketModeServer(self)
        return self

    def disconnect_sockets(self) -> None:
        """Close every Socket Mode connection from the server side (CLOSE 1001). Slack warns first with
        `send_socket({"type": "disconnect", "reason": "refresh_requested"})`, which makes clients reconnect."""
        if self._ws is not None:
            self._ws.disconnect()

    def send_socket(self, message: dict[str, Any]) -> None:
        """Send any message to the newest client, e.g. {"type": "disconnect", "reason": "refresh_requested"}."""
        if self._ws is None or not self._ws.send(ws_frame(TEXT, json.dumps(message).encode())):
            raise AssertionError("no Socket Mode client is connected")

    def send_envelope(self, payload_type: str, payload: dict[str, Any], envelope_id: str | None = None,
                      retry_attempt: int = 0, accepts_response_payload: bool | None = None) -> str:
        """Deliver an "events_api", "slash_commands" or "interactive" envelope; returns its envelope_id."""
        envelope_id = envelope_id or str(uuid.uuid4())
        accepts = payload_type != "events_api" if accepts_response_payload is None else accepts_response_payload
        self.send_socket({"envelope_id": envelope_id, "type": payload_type, "payload": payload,
                          "accepts_response_payload": accepts, "retry_attempt": retry_attempt, "retry_reason": ""})
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The acknowledgement the client sent for an envelope: {"envelope_id": ..., maybe "payload": ...}."""
        def ack() -> dict[str, Any] | None:
            return next((m for m in self._received if m.get("envelope_id") == envelope_id), None)

        with self._cond:
            if self._cond.wait_for(lambda: ack() is not None, timeout):
                return ack()  # type: ignore[return-value]
            seen = [m.get("envelope_id") for m in self._received]
        raise AssertionError(f"no ack for envelope {envelope_id} within {timeout}s; acks seen: {seen}")

    def _socket_received(self, text: str) -> None:
        with self._cond:
            self._received.append(json.loads(text) if text.startswith("{") else {"raw": text})
            self._cond.notify_all()


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            url, content_type = urlsplit(self.path), self.headers.get("Content-Type", "")
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if url.path.startswith("/upload/") and url.path[8:] in fake._files:
                fake.uploaded[url.path[8:]] = raw
                return self._reply(200, f"OK - {len(raw)}".encode(), "text/plain")
            if url.path.startswith("/commands/"):
                fake._record(Call("response_url", parse_body(content_type, raw), None, time.time()))
                return self._reply(200, b"ok", "text/html")
            if not url.path.startswith("/api/"):
                return self._reply(404, b"Not Found", "text/plain")
            body = {**parse_form(url.query), **parse_body(content_type, raw)}
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else body.get("token")
            status, answer, headers = fake.handle(url.path[5:], body, token)
            self._reply(status, json.dumps(answer).encode(), "application/json; charset=utf-8", headers)

        do_GET = do_POST

        def _reply(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Type": content_type, "Content-Length": len(data), **(headers or {})}.items():
                self.send_header(name, str(value))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def ws_frame(opcode: int, data: bytes) -> bytes:
    """A final, unmasked (server-to-client) WebSocket frame, with a 16- or 64-bit extended length if needed."""
    n = len(data)
    size = bytes([n]) if n < 126 else struct.pack("!BH", 126, n) if n < 65536 else struct.pack("!BQ", 127, n)
    return bytes([0x80 | opcode]) + size + data


def ws_read_frame(stream: BinaryIO) -> tuple[bool, int, bytes] | None:
    """(fin, opcode, unmasked payload) of the next frame from a buffered reader; None at end of stream."""
    head = stream.read(2)
    if len(head) < 2:
        return None
    n = head[1] & 0x7F
    if n >= 126:
        n = struct.unpack("!H" if n == 126 else "!Q", stream.read(2 if n == 126 else 8))[0]
    mask = stream.read(4) if head[1] & 0x80 else b""
    data = stream.read(n)
    if len(data) < n:
        return None
    if mask:
        data = (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    return bool(head[0] & 0x80), head[0] & 0x0F, data


class _SocketModeServer:
    """One thread accepts; one thread per client does the handshake, says hello, then reads frames."""

    def __init__(self, fake: FakeSlack) -> None:
        self.fake, self.lock = fake, threading.Lock()
        self.peers: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port, self.stopping = self.listener.getsockname()[1], threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        stream, message = conn.makefile("rb"), b""
        try:
            if not self._handshake(conn, stream):
                return
            while (frame := ws_read_frame(stream)) is not None:
                fin, opcode, data = frame
                if opcode == PING:
                    self.send(ws_frame(PONG, data), conn)
                elif opcode == CLOSE:
                    self.send(ws_frame(CLOSE, data[:2]), conn)
                    return
                elif opcode in (TEXT, CONTINUATION):
                    message += data
                    if fin:
                        self.fake._socket_received(message.decode())
                        message = b""
        except OSError:
            pass
        finally:
            with self.lock:
                self.peers = [p for p in self.peers if p is not conn]
                if not self.peers:
                    self.fake.socket_connected.clear()
            stream.close()
            conn.close()

    def _handshake(self, conn: socket.socket, stream: BinaryIO) -> bool:
        request_line, headers = stream.readline().decode(), {}
        while (line := stream.readline().decode()).strip():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if not (request_line.startswith("GET ") and key and headers.get("upgrade", "").lower() == "websocket"
                and headers.get("sec-websocket-version") == "13"):
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID},
                 "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060}}
        response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n")
        with self.lock:
            conn.sendall(response.encode() + ws_frame(TEXT, json.dumps(hello).encode()))
            self.peers.append(conn)
            self.fake.socket_connected.set()
        return True

    def send(self, frame: bytes, conn: socket.socket | None = None) -> bool:
        """Send a frame to `conn` (default: the newest client); False when it is not connected."""
        with self.lock:
            conn = conn or (self.peers[-1] if self.peers else None)
            if conn not in self.peers:
                return False
            conn.sendall(frame)
            return True

    def disconnect(self) -> None:
        with self.lock:
            peers, self.peers = self.peers, []
            self.fake.socket_connected.clear()
            for conn in peers:
                try:
                    conn.sendall(ws_frame(CLOSE, struct.pack("!H", 1001)))  # 1001: going away
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.disconnect()


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack signs a request with: v0 HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_payload(event: dict[str, Any], event_id: str, team_id: str = TEAM_ID, api_app_id: str = APP_ID,
                  bot_user_id: str = "UBOT") -> dict[str, Any]:
    """An Events API `event_callback`: the HTTP body, and the payload of a Socket Mode "events_api" envelope."""
    now = time.time()
    return {"token": "fake-verification-token", "team_id": team_id, "context_team_id": team_id,
            "context_enterprise_id": None, "api_app_id": api_app_id,
            "event": {"event_ts": event.get("ts", f"{now:.6f}"), **event}, "type": "event_callback",
            "event_id": event_id, "event_time": int(now), "is_ext_shared_channel": False,
            "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id, "is_bot": True,
                                "is_enterprise_install": False}]}


def event_body(event: dict[str, Any], event_id: str, team_id: str = TEAM_ID,
               api_app_id: str = APP_ID) -> tuple[str, str]:
    return json.dumps(event_payload(event, event_id, team_id, api_app_id)), "application/json"


def command_payload(command: str = "/switchboard", text: str = "", user_id: str = "U1", channel_id: str = "C1",
                    response_url: str | None = None) -> dict[str, str]:
    """A slash command's fields: form-encoded over HTTP, the payload of a "slash_commands" envelope."""
    return {"token": "fake-verification-token", "team_id": TEAM_ID, "team_domain": "fake", "channel_id": channel_id,
            "channel_name": "general", "user_id": user_id, "user_name": "someone", "command": command, "text": text,
            "api_app_id": APP_ID, "is_enterprise_install": "false",
            "response_url": response_url or f"https://hooks.slack.com/commands/{TEAM_ID}/1/fake",
            "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex}"}


def command_body(command: str = "/switchboard", text: str = "", user_id: str = "U1", channel_id: str = "C1",
                 response_url: str | None = None) -> tuple[str, str]:
    body = urlencode(command_payload(command, text, user_id, channel_id, response_url))
    return body, "application/x-www-form-urlencoded"


def _element(message: dict[str, Any], channel: str, action_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The actions block and its element `action_id` in `message`, or LookupError: nobody could use it."""
    block, element = next(((b, e) for b in message.get("blocks", []) if b.get("type") == "actions"
                           for e in b.get("elements", []) if e.get("action_id") == action_id), (None, None))
    if block is None or element is None:
        raise LookupError(f"the message at {channel}/{message.get('ts')} has no element {action_id!r}")
    return block, element


def action_payload(message: dict[str, Any], channel: str, action_id: str, user_id: str, *,
                   selected: str | None = None, response_url: str | None = None,
                   served: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A `block_actions` payload: `user_id` clicks the element `action_id` of `message` (as posted) in `channel`.

    A button sends its value; a static_select sends its option whose value is `selected`, an
    external_select the option of that value among `served` (what the app's options answer offered),
    and the payload's `state` holds every menu's selection, as Slack's client sends them. Raises
    LookupError when the message has no such element or option: nobody could have clicked it.
    """
    block, element = _element(message, channel, action_id)
    action: dict[str, Any] = {"type": element["type"], "action_id": action_id, "block_id": block["block_id"],
                              "action_ts": f"{time.time():.6f}"}
    state: dict[str, dict[str, Any]] = {}
    if element["type"] == "button":
        action |= {k: element[k] for k in ("text", "value", "style") if k in element}
    else:
        offered = served if element["type"] == "external_select" else element.get("options", [])
        option = next((o for o in offered or [] if o["value"] == selected), None)
        if option is None:
            raise LookupError(f"{action_id!r} has no option {selected!r}")
        action |= {"selected_option": option, "placeholder": element.get("placeholder")}
    for b in message.get("blocks", []):
        for e in b.get("elements", []) if b.get("type") == "actions" else []:
            if e.get("type") in ("static_select", "external_select"):
                chosen = action["selected_option"] if e is element else e.get("initial_option")
                state.setdefault(b["block_id"], {})[e["action_id"]] = {"type": e["type"],
                                                                       "selected_option": chosen}
    thread = {"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {}
    return {"type": "block_actions", "token": "fake-verification-token", "api_app_id": APP_ID,
            "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": TEAM_ID},
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel,
                          "is_ephemeral": False, **thread},
            "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex}", "team": {"id": TEAM_ID, "domain": "fake"},
            "enterprise": None, "is_enterprise_install": False, "channel": {"id": channel, "name": "support"},
            "message": message, "state": {"values": state},
            "response_url": response_url or f"https://hooks.slack.com/actions/{TEAM_ID}/1/fake", "actions": [action]}


def action_body(message: dict[str, Any], channel: str, action_id: str, user_id: str, *,
                selected: str | None = None, response_url: str | None = None,
                served: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """The interactivity request over HTTP: the payload's JSON in a form field named `payload`."""
    payload = action_payload(message, channel, action_id, user_id, selected=selected, response_url=response_url,
                             served=served)
    return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"


def suggestion_payload(message: dict[str, Any], channel: str, action_id: str, user_id: str,
                       value: str) -> dict[str, Any]:
    """A `block_suggestion` payload: `user_id` has typed `value` into the external_select `action_id` of
    `message` in `channel`, and Slack asks the app's options endpoint what to offer."""
    block, element = _element(message, channel, action_id)
    if element["type"] != "external_select":
        raise LookupError(f"{action_id!r} is a {element['type']}: Slack asks the app only about an external_select")
    thread = {"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {}
    return {"type": "block_suggestion", "token": "fake-verification-token", "api_app_id": APP_ID,
            "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": TEAM_ID},
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel,
                          "is_ephemeral": False, **thread},
            "team": {"id": TEAM_ID, "domain": "fake"}, "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": channel, "name": "support"}, "message": message,
            "action_id": action_id, "block_id": block["block_id"], "value": value}


def suggestion_body(message: dict[str, Any], channel: str, action_id: str, user_id: str,
                    value: str) -> tuple[str, str]:
    """The options request over HTTP, form-encoded as an interactivity request is."""
    payload = suggestion_payload(message, channel, action_id, user_id, value)
    return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
