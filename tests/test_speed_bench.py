"""`python -m bench.speed` end to end on a Llama-3.2-shaped model shrunk to run anywhere.

The GPU figures come from one command on a machine CI does not have; this runs the same phases and
code on the CPU (only the device differs), so that command is known to work before a GPU is lent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_speed_bench_runs_every_phase_and_its_fast_path_matches_the_plain_one(
    embedded_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "speed.json"
    command = [sys.executable, "-m", "bench.speed", "--model", "tiny-llama-shape",
               "--cache", str(embedded_cache), "--train-sizes", "48", "--epochs", "1",
               "--single", "20", "--plain", "20", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    envelope = json.loads(out.read_text())
    assert envelope["bench"] == "bench.speed" and envelope["arguments"]["model"] == "tiny-llama-shape"
    result = envelope["result"]

    failed = {phase: value for phase, value in result.items() if isinstance(value, dict) and "error" in value}
    assert not failed
    serve, bounds, train = result["serve"], result["bounds"], result["train"][0]
    assert serve["plain_path"]["same_department"] == serve["plain_path"]["queries"] == 20
    assert serve["plain_path"]["max_probability_difference"] < 1e-5
    assert 0 < serve["single_query_ms"]["median"] <= serve["single_query_ms"]["p95"]
    assert serve["batched"]["queries"] == 3080 and serve["batched"]["queries_per_s"] > 0
    assert bounds["transformers_forward"]["same_department"] == 20
    assert bounds["transformers_forward"]["max_probability_difference"] < 1e-5
    assert bounds["peak_matmul_tflops"] > 0 and bounds["matmul_floor_ms"] >= bounds["matmul_compute_floor_ms"]
    assert train["examples"] == 48 and train["steps"] == -(-48 // train["batch_size"])  # one epoch
    assert train["examples_per_s"] > 0
    assert result["startup"]["classify_command_s"]["median"] > 0
    assert result["reference_tfidf_svm"]["single_query_ms"]["median"] > 0
    assert result["ratio_to_reference"]["single_query_median"] > 0
