"""The deployment smoke test behind deploy/smoke.sh: build the image, bring compose's `cpu` profile up with podman,
and drive it as Slack would, against a loopback Slack Web API on this host.

Each check prints one line (`ok`/`FAIL`, its name, what it saw) and lands in bench/results/deploy-smoke.json
with the build time, the image's size and the time from `up` to healthy. The first failed check stops the run
(exit 1) and names itself. Containers reach the loopback Slack through `host.containers.internal`; the bot's
port is published on 127.0.0.1 as compose publishes it. Podman runs a container's HEALTHCHECK from a systemd
timer, and there is none in a container sandbox, so this script runs `podman healthcheck run` every few
seconds itself: the image's own check, on the schedule's behalf.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smoke_images import build_app, build_base, build_postgres, image_size_mb  # noqa: E402

from fakes.slack_api import FakeSlack, event_body, sign  # noqa: E402

PROJECT = "switchboard-smoke"
SECRET, ADMIN, AGENT = "smoke-signing-secret", "USMOKEADMIN", "USMOKEAGENT"


class Failed(Exception):
    pass


class Smoke:
    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args, self.env = args, env
        self.checks: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {"checks": self.checks}
        self.work = Path(tempfile.mkdtemp(prefix="switchboard-smoke-"))
        self.slack = FakeSlack(host="0.0.0.0")
        self.port = args.port
        self._beat = threading.Event()

    # -- plumbing
    def run(self, *command: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and done.returncode != 0:
            raise Failed(f"`{' '.join(command[:6])} …` exited {done.returncode}: "
                         f"{(done.stderr or done.stdout).strip().splitlines()[-1:] or ''}")
        return done

    def compose(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        return self.run(*self.args.compose.split(), "-p", PROJECT, "--env-file", str(self.work / ".env"),
                        "-f", str(self.work / "deploy" / "compose.yaml"),
                        "-f", str(self.work / "deploy" / "smoke.override.yaml"), "--profile", "cpu", *args,
                        timeout=timeout)

    def container(self, service: str) -> str:
        names = self.run("podman", "ps", "-a", "--format", "{{.Names}}").stdout.split()
        found = [n for n in names if n.startswith(f"{PROJECT}_{service}_") or n == f"{PROJECT}-{service}-1"]
        if not found:
            raise Failed(f"no {service} container (have: {', '.join(names)})")
        return found[0]

    def check(self, name: str, ok: bool, detail: str, **figures: Any) -> None:
        self.checks.append({"check": name, "ok": ok, "detail": detail, **figures})
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if not ok:
            raise Failed(name)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """What goes wrong inside fails the check `name`, with what went wrong: the line says which check failed."""
        try:
            yield
        except (Failed, subprocess.TimeoutExpired) as exc:
            if self.checks and self.checks[-1]["check"] == name:
                raise
            self.check(name, False, str(exc))

    def wait(self, what: str, condition: Any, timeout: float) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if condition():
                return time.monotonic() - began
            time.sleep(1)
        raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")

    # -- the steps
    def prepare(self) -> None:
        (self.work / "deploy").mkdir()
        shutil.copy(ROOT / "deploy" / "compose.yaml", self.work / "deploy" / "compose.yaml")
        origin = self.slack.origin.replace("127.0.0.1", "host.containers.internal")
        (self.work / ".env").write_text("\n".join([
            "SLACK_BOT_TOKEN=xoxb-smoke", f"SLACK_SIGNING_SECRET={SECRET}", f"SLACK_API_URL={origin}/api/",
            f"SWITCHBOARD_ADMINS={ADMIN}", f"SWITCHBOARD_AGENTS={AGENT}", "SWITCHBOARD_AUDIT_RATE=0",
            "SWITCHBOARD_RETRAIN_AFTER_LABELS=100000", f"SWITCHBOARD_PORT={self.port}", ""]))
        override: dict[str, Any] = {
            "services": {"postgres": {"image": self.args.postgres_image},  # compose's own pg_isready check
                         "bot": {"image": self.args.image}, "trainer": {"image": self.args.image}},
            # Never a team's own volumes: compose names them switchboard-data and switchboard-postgres-data.
            "volumes": {"switchboard-data": {"name": f"{PROJECT}-data"},
                        "postgres-data": {"name": f"{PROJECT}-postgres-data"}}}
        if self.args.break_ == "entrypoint":
            override["services"]["bot"]["entrypoint"] = ["/usr/local/bin/no-such-entrypoint"]
        elif self.args.break_ == "database-url":
            wrong = "postgresql+psycopg://switchboard:wrong-password@postgres:5432/switchboard"
            for service in ("bot", "trainer"):
                override["services"][service]["environment"] = {"DATABASE_URL": wrong}
        (self.work / "deploy" / "smoke.override.yaml").write_text(json.dumps(override, indent=2))

    def take_down(self) -> None:
        """`down -v`, and the smoke's named volumes by name: podman-compose leaves a volume given a `name`."""
        try:
            self.compose("down", "-v", timeout=600)
        except (Failed, subprocess.TimeoutExpired) as exc:
            print(f"could not take the smoke's containers down: {exc}", flush=True)
        self.run("podman", "volume", "rm", "-f", f"{PROJECT}-data", f"{PROJECT}-postgres-data", check=False)

    def unwritable_volume(self) -> None:
        """The data volume made by root before compose first mounts it (as a host folder or a volume someone
        created by hand is): not empty, so podman does not copy the image's /data (owned by uid 10001) into it."""
        self.run("podman", "volume", "create", f"{PROJECT}-data")
        self.run("podman", "run", "--rm", "--user", "0", "--entrypoint", "/bin/sh", "-v", f"{PROJECT}-data:/data",
                 self.args.image, "-c", "touch /data/.made-by-root && chown -R 0:0 /data && chmod 755 /data")

    def build(self) -> None:
        began = time.monotonic()
        if self.args.base == "debian":
            build_base(self.run, self.args.base_image, self.work)
        build_postgres(self.run, self.args.postgres_image, self.args.base_image if self.args.base == "debian"
                       else "debian:bookworm-slim", self.work)
        app_began = time.monotonic()
        build_app(self.run, self.args.image, ROOT, base=self.args.base_image if self.args.base == "debian" else None,
                  wheels=self.args.wheels, ca_bundle=self.args.ca_bundle)
        size = image_size_mb(self.run, self.args.image)
        self.check("image builds", True, f"{self.args.image}, {size:.0f} MB", build_seconds=round(
            time.monotonic() - app_began, 1), all_images_seconds=round(time.monotonic() - began, 1), image_mb=size)

    def healthchecks(self) -> None:
        """What podman's systemd timer would do: run each container's own HEALTHCHECK every few seconds."""
        while not self._beat.wait(3):
            for name in self.run("podman", "ps", "--format", "{{.Names}}", check=False).stdout.split():
                if name.startswith(PROJECT) and "trainer" not in name:
                    self.run("podman", "healthcheck", "run", name, check=False, timeout=60)

    def up(self, first: bool) -> float:
        began = time.monotonic()
        self.compose("up", "-d", timeout=1800)
        bot = self.container("bot")

        def healthy() -> bool:
            health, restarts, code = self.run("podman", "inspect", "--format", "{{.State.Health.Status}} "
                                              "{{.RestartCount}} {{.State.ExitCode}}", bot, check=False).stdout.split()
            if int(restarts) >= 2:  # one exit is what `restart` is for (postgres still starting); two are a loop
                raise Failed(f"the bot container exits (code {code}, restarted {restarts} times): "
                             f"{self.last_words(bot)[:300]}")
            return health == "healthy"

        self.wait("the bot container to be healthy", healthy, timeout=600)
        return time.monotonic() - began

    def last_words(self, container: str) -> str:
        """The container's last error line (or line) of output; one that restarts may not have written it yet."""
        for _ in range(5):
            logs = subprocess.run(["podman", "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env=self.env, timeout=60)  # one stream, in the order written
            lines = [line for line in logs.stdout.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("switchboard: ")]  # the CLI's one-line errors
            if lines:  # a restarted container may be starting again: its last error, not its first words
                return (errors or lines)[-1]
            time.sleep(2)
        return "(no output)"

    def http(self, path: str, body: str | None = None, content_type: str = "application/json") -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        headers = {"Content-Type": content_type, **(sign(SECRET, body) if body is not None else {})}
        request = urllib.request.Request(url, data=body.encode() if body is not None else None, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:  # refused, reset: the bot is not listening
            return 0, str(exc)

    def customer(self, text: str, ts: str) -> None:
        body, kind = event_body({"type": "message", "channel": "CSMOKE", "channel_type": "channel",
                                 "user": "USMOKECUSTOMER", "text": text, "ts": ts, "event_ts": ts}, f"Ev{ts}")
        status, text = self.http("/slack/events", body, kind)
        if status != 200:
            raise Failed(f"the bot answered {status or text} to a signed event")

    def replies_to(self, ts: str) -> list[dict[str, Any]]:
        return [c.body for c in self.slack.calls_to("chat.postMessage")
                if c.ok and c.body.get("thread_ts") == ts and c.body.get("channel") == "CSMOKE"]

    def psql(self, sql: str) -> str:
        return self.run("podman", "exec", self.container("postgres"), "psql", "-U", "switchboard", "-d",
                        "switchboard", "-tAc", sql).stdout.strip()

    def switchboard(self, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        return self.run("podman", "exec", self.container("trainer"), "/usr/local/bin/switchboard-entrypoint",
                        *args, timeout=timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", choices=["python", "debian"], default="python",
                        help="python: the official image (pulled); debian: one made here from Debian's packages")
    parser.add_argument("--base-image", default="switchboard-base:bookworm")
    parser.add_argument("--postgres-image", default="switchboard-smoke-postgres:15")
    parser.add_argument("--image", default="switchboard:smoke")
    parser.add_argument("--wheels", help="a folder of wheels torch is installed from (mounted into the build)")
    parser.add_argument("--ca-bundle", help="a CA bundle for pip in the build (a network that intercepts TLS)")
    parser.add_argument("--compose", default=os.environ.get("SMOKE_COMPOSE", "podman-compose"))
    parser.add_argument("--port", type=int, default=13000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "deploy-smoke.json")
    parser.add_argument("--keep", action="store_true", help="leave the containers and volumes up")
    parser.add_argument("--break", dest="break_", choices=["entrypoint", "volume", "database-url"],
                        help="break the deployment on purpose (the smoke must then fail, naming the check): the bot's "
                             "entrypoint, the data volume's ownership (root's), or DATABASE_URL's password")
    args = parser.parse_args()
    if args.break_ and args.out == parser.get_default("out"):
        args.out = args.out.with_name(f"deploy-smoke-break-{args.break_}.json")
    from smoke_checks import run_checks

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still write the JSON and take it down
    smoke = Smoke(args, dict(os.environ))
    smoke.result["break"] = args.break_
    began = time.monotonic()
    status = 0
    try:
        smoke.prepare()
        run_checks(smoke)
        if args.break_:
            raise Failed(f"the deployment was broken on purpose ({args.break_}) and every check passed")
        smoke.result["commit"] = _tested_commit()
    except (Failed, subprocess.TimeoutExpired) as exc:
        print(f"FAIL: {exc}", flush=True)
        smoke.result["failed"] = str(exc)
        status = 1
    finally:
        smoke._beat.set()
        if not args.keep:
            smoke.take_down()
        smoke.result["seconds"] = round(time.monotonic() - began, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(smoke.result, indent=2))
        print(f"saved {args.out}", flush=True)
    return status


def _tested_commit() -> str | None:
    """HEAD, when the packaging is as committed there (scripts/packaging_changed.py, which
    scripts/smoke-if-changed.sh asks too)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        return None
    same = subprocess.run([sys.executable, str(ROOT / "scripts" / "packaging_changed.py"), head.stdout.strip()],
                          cwd=ROOT)
    return head.stdout.strip() if same.returncode == 0 else None


if __name__ == "__main__":
    sys.exit(main())
