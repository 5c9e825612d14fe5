"""Self-tests of the loopback Slack (fakes/slack_api.py) against the real slack_sdk clients."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.webhook import WebhookClient

from fakes.slack_api import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    FakeSlack,
    command_body,
    command_payload,
    event_body,
    event_payload,
    parse_form,
    sign,
    ws_read_frame,
)
from tests.support import wait_until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_web_client_calls_are_answered_and_recorded(slack: FakeSlack) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.base_url)
    assert client.auth_test()["user_id"] == "UBOT"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Billing*"}}]
    posted = client.chat_postMessage(channel="C1", text="Billing", blocks=blocks)
    assert posted["channel"] == "C1" and posted["message"]["bot_id"] == "BBOT"
    call = slack.wait_for("chat.postMessage")[0]
    assert call.body["blocks"] == blocks and call.token == "xoxb-test"

    updated = client.chat_update(channel="C1", ts=posted["ts"], text="Routed to Billing")
    assert updated["ts"] == posted["ts"] and updated["text"] == "Routed to Billing"
    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel="C1", ts="1.000000", text="x")
    assert missing.value.response["error"] == "message_not_found"

    link = client.chat_getPermalink(channel="C1", message_ts=posted["ts"])["permalink"]
    assert link == f"https://fake.slack.com/archives/C1/p{posted['ts'].replace('.', '')}"
    second = client.chat_postMessage(channel="C1", text="again")
    assert float(second["ts"]) > float(posted["ts"])

    view = {"type": "home", "blocks": blocks}
    published = client.views_publish(user_id="U1", view=view)["view"]
    assert published["id"].startswith("V") and published["blocks"] == blocks
    assert slack.calls_to("views.publish")[0].body["view"] == view

    uploaded = client.files_upload_v2(channel="C1", file=PNG, filename="chart.png", title="Accuracy")
    assert uploaded["file"]["title"] == "Accuracy"
    assert slack.uploaded[uploaded["file"]["id"]] == PNG
    assert [c.method for c in slack.calls][-2:] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    assert slack.calls_to("files.completeUploadExternal")[0].body["files"][0]["id"] == uploaded["file"]["id"]


def test_form_encoded_json_fields_are_decoded_and_failures_scripted(slack: FakeSlack) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.base_url)
    attachments = [{"text": "a", "color": "good"}]
    client.api_call("chat.postMessage", data={"channel": "C1", "attachments": json.dumps(attachments)})
    assert slack.calls_to("chat.postMessage")[0].body["attachments"] == attachments
    assert client.reactions_add(channel="C1", timestamp="1.2", name="eyes")["ok"]  # any other method: ok
    for method, args, error in [("chat.postMessage", {"channel": "C1"}, "no_text"),
                                ("chat.postMessage", {"text": "x"}, "channel_not_found"),
                                ("chat.update", {"channel": "C1", "text": "x"}, "invalid_arguments"),
                                ("views.publish", {"view": {"type": "home", "blocks": []}}, "invalid_arguments")]:
        with pytest.raises(SlackApiError) as rejected:
            client.api_call(method, json=args)
        assert rejected.value.response["error"] == error

    slack.fail("chat.postMessage", error="not_in_channel")
    with pytest.raises(SlackApiError) as failed:
        client.chat_postMessage(channel="C2", text="x")
    assert failed.value.response["error"] == "not_in_channel"
    assert client.chat_postMessage(channel="C2", text="x")["ok"]
    with pytest.raises(SlackApiError) as unauthed:
        WebClient(base_url=slack.base_url).auth_test()
    assert unauthed.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError, match="not_enabled"):
        client.apps_connections_open(app_token="xapp-test")
    slack.reset()
    assert slack.calls == []
    with pytest.raises(AssertionError, match="calls seen: none"):
        slack.wait_for("chat.update", timeout=0.05)


def test_rate_limit_then_success_with_retry_handler(slack: FakeSlack) -> None:
    client = WebClient(token="xoxb-test", base_url=slack.base_url,
                       retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    assert client.chat_postMessage(channel="C1", text="hello")["ok"]
    limited, succeeded = slack.calls_to("chat.postMessage")
    assert (limited.status, succeeded.status) == (429, 200)
    assert succeeded.at - limited.at >= 1.0  # the client honoured Retry-After
    slack.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as limited_error:
        WebClient(token="xoxb-test", base_url=slack.base_url).chat_postMessage(channel="C1", text="x")
    assert limited_error.value.response.status_code == 429
    assert limited_error.value.response.headers["Retry-After"] == "7"


def _close_fast(client: SocketModeClient, slack: FakeSlack) -> None:
    """SocketModeClient.close() waits for its blocked recv (3 s timeout); a server-side close ends that at once."""
    client.auto_reconnect_enabled = False
    slack.disconnect_sockets()
    wait_until(lambda: not client.is_connected())
    client.close()


def test_socket_mode_client_connects_receives_envelopes_and_acks(slack: FakeSlack) -> None:
    slack.socket_mode()
    requests: list[SocketModeRequest] = []

    def listener(client: SocketModeClient, request: SocketModeRequest) -> None:
        requests.append(request)
        payload = {"text": "ok"} if request.type == "slash_commands" else None
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=payload))

    client = SocketModeClient(app_token="xapp-test", web_client=WebClient(base_url=slack.base_url), ping_interval=0.5)
    client.socket_mode_request_listeners.append(listener)
    try:
        client.connect()
        assert slack.socket_connected.wait(5)
        assert slack.calls_to("apps.connections.open")[0].token == "xapp-test"

        event = {"type": "app_mention", "user": "U1", "text": "<@UBOT> refund?", "ts": "1700000000.000100",
                 "channel": "C1"}
        envelope_id = slack.send_envelope("events_api", event_payload(event, "Ev1"))
        assert slack.wait_for_ack(envelope_id, timeout=5) == {"envelope_id": envelope_id}
        assert requests[0].payload["event"]["text"] == "<@UBOT> refund?" and not requests[0].accepts_response_payload

        big = command_payload(text="x" * 70_000)  # server-to-client frame with a 64-bit length
        envelope_id = slack.send_envelope("slash_commands", big)
        assert slack.wait_for_ack(envelope_id, timeout=5) == {"envelope_id": envelope_id, "payload": {"text": "ok"}}
        assert requests[1].payload["text"] == big["text"] and requests[1].accepts_response_payload

        # a connection dropped by the server: the client's monitor (every ping_interval) opens a new one
        first_session = client.session_id()
        slack.disconnect_sockets()
        assert slack.socket_connected.wait(5) and len(slack.calls_to("apps.connections.open")) == 2
        wait_until(lambda: client.is_connected() and client.session_id() != first_session)
        envelope_id = slack.send_envelope("events_api", event_payload(event, "Ev2"), retry_attempt=1)
        assert slack.wait_for_ack(envelope_id, timeout=5) == {"envelope_id": envelope_id}
        assert requests[2].retry_attempt == 1
    finally:
        _close_fast(client, slack)
    assert not slack.socket_connected.is_set()
    with pytest.raises(AssertionError, match="no Socket Mode client"):
        slack.send_envelope("events_api", {})
    with pytest.raises(AssertionError, match="no ack"):
        slack.wait_for_ack("never", timeout=0.05)


def test_socket_mode_bot_token_is_refused(slack: FakeSlack) -> None:
    slack.socket_mode()
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        WebClient(base_url=slack.base_url).apps_connections_open(app_token="xoxb-test")


def _masked(opcode: int, data: bytes) -> bytes:
    n, mask = len(data), os.urandom(4)
    size = bytes([0x80 | n]) if n < 126 else struct.pack("!BH", 0xFE, n) if n < 65536 else struct.pack("!BQ", 0xFF, n)
    return bytes([0x80 | opcode]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_websocket_server_speaks_rfc6455_to_a_raw_client(slack: FakeSlack) -> None:
    url = WebClient(base_url=slack.socket_mode().base_url).apps_connections_open(app_token="xapp-1")["url"]
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(f"GET /link/?ticket=x HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 101")
        while stream.readline().strip():
            pass
        hello = ws_read_frame(stream)
        assert hello is not None and json.loads(hello[2])["connection_info"] == {"app_id": "A0FAKE"}
        sock.sendall(_masked(PING, b"s:1.0"))
        assert ws_read_frame(stream) == (True, PONG, b"s:1.0")
        ack = json.dumps({"envelope_id": "e1", "payload": {"text": "y" * 300}}).encode()  # 16-bit length
        sock.sendall(_masked(TEXT, ack))
        assert slack.wait_for_ack("e1", timeout=5)["payload"]["text"] == "y" * 300
        big = json.dumps({"envelope_id": "e2", "payload": {"text": "z" * 70_000}}).encode()  # 64-bit length
        sock.sendall(_masked(TEXT, big))
        assert len(slack.wait_for_ack("e2", timeout=5)["payload"]["text"]) == 70_000
        sock.sendall(_masked(CLOSE, struct.pack("!H", 1000)))
        assert ws_read_frame(stream) == (True, CLOSE, struct.pack("!H", 1000))
        assert ws_read_frame(stream) is None


def test_signatures_are_accepted_by_slack_sdk_and_stale_ones_rejected() -> None:
    verifier = SignatureVerifier("s3cret")
    body, content_type = event_body({"type": "message", "text": "hi", "ts": "1.2", "channel": "C1"}, "Ev9")
    assert content_type == "application/json" and json.loads(body)["event"]["event_ts"] == "1.2"
    assert verifier.is_valid_request(body, sign("s3cret", body))
    assert not verifier.is_valid_request(body, sign("wrong", body))
    assert not verifier.is_valid_request(body, sign("s3cret", body, timestamp=int(time.time()) - 600))

    form, content_type = command_body(text="where do refunds go?", response_url="http://127.0.0.1:1/commands/x")
    assert content_type == "application/x-www-form-urlencoded"
    fields = parse_form(form)
    assert fields["command"] == "/switchboard" and fields["text"] == "where do refunds go?" and fields["trigger_id"]
    assert verifier.is_valid_request(form, sign("s3cret", form))


def test_response_url_posts_are_recorded(slack: FakeSlack) -> None:
    assert WebhookClient(slack.response_url).send(text="Routed", response_type="ephemeral").status_code == 200
    assert slack.wait_for("response_url")[0].body == {"text": "Routed", "response_type": "ephemeral"}
