"""Shared fixtures: a clean environment, a temporary store (SQLite, or PostgreSQL with --store=postgres),
a tiny real Llama, and the loopback Slack with the scripted bot on it (tests/support.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from fakes.bot_server import BotServer
from fakes.slack_api import FakeSlack
from store.db import SessionFactory, make_engine, session_factory
from store.migrations import migrate
from tests.support import ENV_PREFIXES, SAMPLE, StartBot, scripted_bot


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's settings or .env file."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


class FaultMatrixReport:
    """Collects the fault matrix's cells from test reports (so from xdist's workers too) and prints the
    table at the end of the run: test_fault_matrix.py records each cell as a user property."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str, str], bool] = {}
        self.order: dict[str, int] = {}  # steps and failures in the test module's order, whatever ran first

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == "fault_matrix" and report.when == "call":
                store, step, failure, step_index, failure_index = value
                self.cells[(store, step, failure)] = report.passed
                self.order |= {step: step_index, failure: failure_index}

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for store in sorted({store for store, _, _ in self.cells}):
            mine = {(step, failure): held for (s, step, failure), held in self.cells.items() if s == store}
            steps = sorted({step for step, _ in mine}, key=self.order.__getitem__)
            failures = sorted({failure for _, failure in mine}, key=self.order.__getitem__)
            terminalreporter.write_line(f"fault matrix on {store}: {sum(mine.values())} of {len(mine)} cells held")
            terminalreporter.write_line(f"  {'step':<20}" + "".join(f"{f:>9}" for f in failures))
            for step in steps:
                marks = "".join(f"{'held' if mine.get((step, f)) else ('FAILED' if (step, f) in mine else '-'):>9}"
                                for f in failures)
                terminalreporter.write_line(f"  {step:<20}{marks}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: a module whose tests also run on PostgreSQL (POSTGRES_MODULES)")
    config.pluginmanager.register(FaultMatrixReport(), "fault-matrix-report")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, or they spin
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # and every process a test starts
        import torch

        torch.set_num_threads(1)


# The modules whose tests run on PostgreSQL too (`--store=both`, as CI does, or `--store=postgres` with
# `-m postgres`): the store's queries, the pipeline, the gate and the bot's durable path.
POSTGRES_MODULES = frozenset({
    "test_store_privacy",
    "test_split", "test_import", "test_holdout", "test_gate", "test_pipeline", "test_faults", "test_loop",
    "test_cold_start", "test_cost", "test_baseline", "test_out_of_scope", "test_bot", "test_out_of_scope_bot",
    "test_audits", "test_outbox", "test_trainer_service", "test_replicas", "test_metrics_drift",
    "test_label_history", "test_fault_matrix", "test_delivery", "test_upgrades", "test_forgetting",
    "test_retention", "test_shadow", "test_people", "test_slack_events", "test_event_order", "test_slack_work",
    "test_model_forgetting", "test_erasure_proof", "test_event_payloads"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store", choices=["sqlite", "postgres", "both"], default="sqlite",
                     help="the store the tests' `sessions` and `settings` use; postgres needs TEST_POSTGRES_URL, "
                          "a server's URL (scripts/postgres.sh start prints one); both: SQLite for every test, "
                          "and PostgreSQL too for the fast tests of the modules marked `postgres`")


def _on_postgres(module: str) -> bool:
    return module.rsplit(".", 1)[-1] in POSTGRES_MODULES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _on_postgres(item.module.__name__ if item.module else ""):  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.postgres)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With --store=both, each test of a `postgres` module that is not slow runs once on each store."""
    if metafunc.config.getoption("--store") != "both" or "store" not in metafunc.fixturenames:
        return
    both = _on_postgres(metafunc.module.__name__) and metafunc.definition.get_closest_marker("slow") is None
    metafunc.parametrize("store", ["sqlite", "postgres"] if both else ["sqlite"], indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """The store this test runs on: "sqlite" or "postgres"."""
    return str(getattr(request, "param", request.config.getoption("--store")))


@pytest.fixture
def database_url(store: str, home: Path) -> Iterator[str]:
    """A new, empty store for each test: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if store == "sqlite":
        yield f"sqlite:///{home / 'switchboard.db'}"
        return
    from uuid import uuid4

    from sqlalchemy import create_engine, text

    server = os.environ.get("TEST_POSTGRES_URL")
    if not server:
        pytest.fail("--store=postgres needs TEST_POSTGRES_URL (scripts/postgres.sh start prints one)")
    name = f"switchboard_test_{uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def settings(home: Path, tiny_model_dir: Path, database_url: str) -> Settings:
    return Settings(SWITCHBOARD_HOME=home, SWITCHBOARD_BASE_MODEL=str(tiny_model_dir), DATABASE_URL=database_url)


@pytest.fixture
def sessions(database_url: str) -> Iterator[SessionFactory]:
    engine = make_engine(database_url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def tiny_corpus() -> list[str]:
    import csv

    with (SAMPLE / "train.csv").open() as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    return [*texts, "Customer message:", "Department:", *[f" {w}" for w in
            ("Orders", "Shipping", "Billing", "Refunds", "Accounts", "Customer Care", "alpha", "beta", "gamma")]]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with a BPE tokenizer trained on the sample: a real model, built in a second."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(tiny_corpus(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=True,
                         initializer_range=0.2)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the converted embedded model, converted once per test run: the xdist
    workers share it (the conversion takes half a minute), the first to get there converting it."""
    from filelock import FileLock

    from classifier.model.base_model import embedded_model_dir

    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's own
    folder = shared / "embedded-cache"
    with FileLock(str(shared / "embedded-cache.lock")):
        folder.mkdir(exist_ok=True)
        embedded_model_dir(folder)
    return folder


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def bot(home, sessions, slack) -> Iterator[BotServer]:
    server = scripted_bot(home, sessions, slack, SWITCHBOARD_AUDIT_RATE="0")  # audits: see test_audits.py
    yield server
    server.close()


@pytest.fixture
def start_bot(home, sessions) -> Iterator[StartBot]:
    """Starts the scripted bot with settings (`SWITCHBOARD_AUDIT_RATE="1"`) and an `audit_rng`; stops it after."""
    servers: list[BotServer] = []
    with FakeSlack() as slack:
        def start(**kwargs: Any) -> BotServer:
            servers.append(scripted_bot(home, sessions, slack, **kwargs))
            return servers[-1]

        yield start
        for server in servers:
            server.close()


@pytest.fixture
def audited(start_bot) -> BotServer:
    return start_bot(SWITCHBOARD_AUDIT_RATE="1")
