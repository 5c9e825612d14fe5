"""What the benches share: the result envelope, timing, the bot run as its own process, and the router
trained as the trainer trains it.

Every bench saves through `save`, which writes bench/results/<name>.json as one envelope:
`{"bench", "commit", "date", "arguments", "machine", "result"}`; readers take `load_result(name)`.
Heavy imports (torch, the store, the trainer) happen inside the functions that need them, so that
`python -m bench.NAME --help` and `python -m bench.tables` stay quick.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from classifier.routing.router import LoraRouter
    from core.settings import Settings
    from fakes.slack_api import FakeSlack
    from store.examples import Example
    from trainer.calibrate import Fitted
    from trainer.config import TrainConfig
    from trainer.lora import TrainResult

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-signing-secret"  # the signing secret the bot under test is started with


def save(where: str | Path, result: dict[str, Any], args: argparse.Namespace | None, *, show: bool = True) -> Path:
    """`result` in its envelope, at bench/results/<where>.json (or at `where`, a path); printed when `show`."""
    out = where if isinstance(where, Path) else RESULTS / f"{where}.json"
    envelope = {"bench": running_bench(), "commit": commit(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "arguments": json.loads(json.dumps(vars(args), default=str)) if args is not None else None,
                "machine": machine(), "result": result}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(envelope, indent=2, default=str, ensure_ascii=False) + "\n")
    if show:
        print(json.dumps(envelope, indent=2, default=str, ensure_ascii=False))
    print(f"saved {out}", file=sys.stderr)
    return out


def load_result(where: str | Path) -> dict[str, Any]:
    """What a bench measured: the envelope's "result", from bench/results/<where>.json or the path `where`."""
    path = where if isinstance(where, Path) else RESULTS / f"{where}.json"
    result: dict[str, Any] = json.loads(path.read_text())["result"]
    return result


def running_bench() -> str:
    """The module run as `python -m bench.NAME`."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def commit() -> str | None:
    """HEAD, with "-dirty" when tracked files differ from it. Results under bench/results/ do not count:
    a bench that saves twice (or after another) measured the same code."""
    def git(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if changed else "")


def machine() -> dict[str, Any]:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(), "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def time_single_queries(classify: Callable[[str], object], texts: Sequence[str], *, warmup: int = 5) -> list[float]:
    """Milliseconds for each text classified alone, after `warmup` untimed queries."""
    for text in texts[:warmup]:
        classify(text)
    ms = []
    for text in texts:
        started = time.perf_counter()
        classify(text)
        ms.append((time.perf_counter() - started) * 1000)
    return ms


def summary(values_ms: Sequence[float], *, digits: int = 1) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {"median": round(statistics.median(ordered), digits),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], digits),
            "mean": round(statistics.fmean(ordered), digits), "max": round(ordered[-1], digits), "n": len(ordered)}


def texts(path: Path, n: int) -> list[str]:
    """n texts from a CSV's text column, cycled."""
    import csv

    with path.open() as handle:
        rows = [row["text"] for row in csv.DictReader(handle)]
    return [rows[i % len(rows)] for i in range(n)]


def train_first_model(home: Path) -> tuple[Settings, str]:
    """A store at `home` with the bundled sample, and a first adapter trained on it (1 epoch: the
    benches that use it measure latency, which does not depend on how well it learned)."""
    import csv

    from core.settings import Settings
    from store.db import make_engine, session_factory, transaction
    from store.examples import add_examples
    from store.migrations import migrate
    from trainer.alternatives import AlternativeSet
    from trainer.config import TrainConfig
    from trainer.deps import TrainerConfig, TrainerDeps
    from trainer.pipeline import RunOptions, run_training

    settings = Settings(SWITCHBOARD_HOME=home)
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    with (ROOT / "data/sample/train.csv").open() as handle:
        sample = [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    with transaction(sessions) as session:
        add_examples(session, examples=sample)
    report = run_training(TrainerDeps(sessions, TrainerConfig.of(settings)),
                          RunOptions(config=TrainConfig(epochs=1, min_steps=0), progress=False,
                                     alternatives=AlternativeSet.NONE, trigger="bench"))
    assert report.adapter is not None, report.reason
    return settings, report.adapter


def bot_environment(home: Path, slack: FakeSlack, **extra: str) -> dict[str, str]:
    """This process's environment less our settings, plus a bot at `home` posting to the loopback Slack."""
    ours = ("SWITCHBOARD_", "SLACK_", "OPENAI_", "DATABASE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return env | {"SWITCHBOARD_HOME": str(home), "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
                  "SLACK_API_URL": slack.base_url, "PYTHONPATH": str(ROOT), **extra}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def healthy(port: int) -> bool:
    """`/healthz` answers, with a model active."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return json.loads(answer.read())["active_model"] is not None
    except (urllib.error.URLError, ConnectionError):
        return False


def start_bot(home: Path, slack: FakeSlack) -> tuple[subprocess.Popen[str], int, float]:
    """`switchboard serve --http` as its own process, as in production: (the process, its port, seconds
    until it was healthy)."""
    port = free_port()
    started = time.perf_counter()
    bot = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--http", "--port", str(port)],
                           env=bot_environment(home, slack), cwd=home, stderr=subprocess.DEVNULL, text=True)
    while not healthy(port):
        if bot.poll() is not None:
            raise SystemExit("switchboard serve exited early")
        time.sleep(0.1)
    return bot, port, time.perf_counter() - started


def post(port: int, text: str, ts: str, event_id: str, retry: int = 0) -> tuple[int, float]:
    """A signed message event, as Slack posts it (`retry`: Slack's retry number): (HTTP status, or 0 when
    the connection failed; milliseconds until the answer)."""
    from fakes.bot_server import message
    from fakes.slack_api import event_body, sign

    body, content_type = event_body(message(text, ts=ts), event_id)
    headers = {"Content-Type": content_type, **sign(SECRET, body)}
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_error"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/slack/events", data=body.encode(), headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
            status: int = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return status, (time.perf_counter() - started) * 1000


class TrainedRouter(NamedTuple):
    router: LoraRouter
    result: TrainResult
    fitted: Fitted
    train_on: list[Example]
    fold: list[Example]


def train_router_on_pairs(pairs: Sequence[tuple[str, str]], labels: Sequence[str], *, cache_dir: Path,
                          config: TrainConfig | None = None, base_model: str = "smollm2-135m",
                          progress: bool = True) -> TrainedRouter:
    """The trainer's recipe (`trainer.candidate.train_router`) on (text, label) pairs, the calibration fold
    split off as the trainer splits it, so that the benches measure what ships."""
    from classifier.model.base_model import load_base_model
    from classifier.routing.prompt import PromptFormat
    from store.examples import Example
    from store.tables import LabelSource, Split
    from trainer.calibrate import split_fold
    from trainer.candidate import train_router
    from trainer.config import TrainConfig

    now = datetime.now(UTC)
    train_on, fold = split_fold([Example(i, text, label, Split.TRAIN, LabelSource.IMPORT, now)
                                 for i, (text, label) in enumerate(pairs)])
    model, tokenizer = load_base_model(base_model, cache_dir=cache_dir)
    router, result, fitted = train_router(model=model, tokenizer=tokenizer, train_on=train_on, fold=fold,
                                          labels=labels, prompt=PromptFormat(), config=config or TrainConfig(),
                                          progress=progress, name="bench")
    return TrainedRouter(router, result, fitted, train_on, fold)
