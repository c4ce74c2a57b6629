"""Server lifecycle and the launch scripts, without starting a real server (fast).

The real start / health / stop cycle runs in sglang_engine_test.py and sglang_moe_test.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import pytest
from sglang_support import REPO, SGLANG_PYTHON, require_sglang_env

from pivotrl_jax.rollout.server import (
    PRESETS,
    ServerConfig,
    ServerStartError,
    command,
    launch,
)


def test_cpu_command_is_the_verified_recipe_on_loopback():
    config = ServerConfig(model_path="/m", preset="cpu", python="/venv/bin/python", port=None)
    cmd = command(config, port=31234)
    assert cmd[:3] == ["/venv/bin/python", "-m", "sglang.launch_server"]
    flags = " ".join(cmd[3:])
    for expected in (
        "--model-path /m", "--host 127.0.0.1", "--port 31234", "--device cpu",
        "--attention-backend torch_native", "--sampling-backend pytorch", "--dtype float32",
        "--mem-fraction-static 0.3", "--max-total-tokens 4096", "--skip-tokenizer-init",
    ):  # fmt: skip
        assert expected in flags
    assert dict(PRESETS.get("cpu").env) == {"SGLANG_USE_CPU_ENGINE": "1", "HF_HUB_OFFLINE": "1"}


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: cpu, gpu"):
        command(ServerConfig(model_path="/m", preset="tpu"), port=1)


def test_server_that_exits_at_start_fails_with_its_log_tail(tmp_path):
    # The project venv has no sglang: the server process dies at import.
    config = ServerConfig(
        model_path=str(tmp_path), preset="cpu", python=sys.executable,
        log_path=str(tmp_path / "server.log"), startup_timeout_s=60,
    )  # fmt: skip
    start = time.monotonic()
    with pytest.raises(ServerStartError, match="exited with code 1") as info:
        launch(config)
    assert time.monotonic() - start < 30
    assert "No module named 'sglang'" in str(info.value)  # the log tail
    assert str(tmp_path / "server.log") in str(info.value)


def test_server_script_runs_the_same_command(tmp_path):
    out = subprocess.run(
        [str(REPO / "launch/sglang_server.sh"), "--cpu", "--model-path", str(tmp_path),
         "--python", "/opt/sglang/bin/python", "--port", "30123", "--dry-run",
         "--", "--log-level", "warning"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    config = ServerConfig(
        model_path=str(tmp_path), preset="cpu", python="/opt/sglang/bin/python",
        extra_args=("--log-level", "warning"),
    )  # fmt: skip
    words = shlex.split(out.stdout)
    assert words[:2] == ["SGLANG_USE_CPU_ENGINE=1", "HF_HUB_OFFLINE=1"]
    assert words[2:] == command(config, port=30123)


@pytest.mark.sglang
def test_env_script_second_run_does_nothing():
    require_sglang_env()
    start = time.monotonic()
    out = subprocess.run(
        ["bash", str(REPO / "launch/sglang_cpu_env.sh"), str(SGLANG_PYTHON.parents[1])],
        capture_output=True, text=True, check=True, env={**os.environ},
    )  # fmt: skip
    assert "up to date" in out.stdout
    assert time.monotonic() - start < 10
