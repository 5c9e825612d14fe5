"""The composition root picks the serving path from the settings: the inference engine when
SWITCHBOARD_INFERENCE_URL is set (no model loaded in the bot), the in-process model otherwise."""

from __future__ import annotations

import subprocess
import sys


def test_with_an_inference_url_the_bot_serves_through_the_engine_and_loads_no_model(home, tmp_path, embedded_cache):
    home.mkdir()
    (home / "cache").symlink_to(embedded_cache)  # the converted embedded model, as an installed host has it
    code = ("import sys; from cli.compose import open_context, serving_router; "
            "router = serving_router(open_context()); "
            "print(type(router).__name__, sorted({'torch', 'transformers'} & set(sys.modules)))")
    env = {"SWITCHBOARD_HOME": str(home), "SWITCHBOARD_INFERENCE_URL": "http://127.0.0.1:9/v1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=tmp_path).stdout.split(maxsplit=1)
    assert out[0] == "EngineRouter"
    assert "transformers" not in out[1]
