"""SGLang server lifecycle: launch `python -m sglang.launch_server`, wait until healthy, stop.

    config = ServerConfig(model_path="runs/export/step_0", preset="cpu",
                          python=".venv-sglang/bin/python")
    with launch(config) as server:                  # healthy when the block starts
        engine = SglangEngine([server.url])
    # stopped: SIGTERM to its process group, SIGKILL after `stop_grace_s`

The server runs in its own process group (sglang starts a scheduler and a detokenizer process
beside the HTTP one), so stopping the group stops them all, and it dies with the process that
started it, even one killed with SIGKILL. It binds the loopback address unless told otherwise.
Its output goes to a log file, whose tail is in every start-up error.

A server started elsewhere needs no lifecycle: give its URL to the engine (`wait_healthy(url)`
waits for it). `python -m pivotrl_jax.rollout.server --help` (and launch/sglang_server.sh) start one
in the foreground with the same flags.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

from pivotrl_jax.errors import PivotError
from pivotrl_jax.registry import Registry


class ServerStartError(PivotError, RuntimeError):
    """The server exited or did not become healthy in time; the message ends with its log tail."""


@dataclasses.dataclass(frozen=True)
class ServerPreset:
    """Flags (a shell-quoted string) and environment for one kind of machine."""

    args: str
    env: tuple[tuple[str, str], ...] = ()


PRESETS: Registry[ServerPreset] = Registry("sglang server preset")
# GPU: the checkpoint's dtype; most of the GPU for weights + KV cache (the trainer lives elsewhere).
PRESETS.register("gpu", ServerPreset(args="--dtype auto --mem-fraction-static 0.8"))
# CPU (tests): the recipe of shared/REFERENCE.md §3. float32, or `auto` serves a float32
# checkpoint in float16. --max-total-tokens caps the KV pool (without it, ~18 GB). The static
# fraction is only the start-up check "memory free after loading >= (1 - fraction) x before": at
# 0.05 it failed whenever other processes on the machine took > 5% of free memory meanwhile.
PRESETS.register(
    "cpu",
    ServerPreset(
        args="--device cpu --attention-backend torch_native --sampling-backend pytorch "
        "--dtype float32 --mem-fraction-static 0.3 --max-total-tokens 4096",
        env=(("SGLANG_USE_CPU_ENGINE", "1"), ("HF_HUB_OFFLINE", "1")),
    ),
)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """One SGLang server.

    model_path: HF-layout folder (config.json + safetensors).
    preset: a name in PRESETS ("gpu", "cpu").
    python: the interpreter whose environment has sglang (e.g. ".venv-sglang/bin/python").
    port: None picks a free one.
    weight_version: the version tag of the initial weights (completions carry it).
    tokenizer: False adds --skip-tokenizer-init; the rollout path sends and reads token ids only.
    extra_args: appended after the preset's flags (e.g. ("--tp-size", "8")).
    log_path: None writes to a fresh temporary file.
    """

    model_path: str
    preset: str = "gpu"
    python: str = sys.executable
    host: str = "127.0.0.1"
    port: int | None = None
    weight_version: str = "0"
    tokenizer: bool = False
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    log_path: str | None = None
    startup_timeout_s: float = 600.0
    stop_grace_s: float = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def command(config: ServerConfig, port: int) -> list[str]:
    """The full `python -m sglang.launch_server ...` command line."""
    preset = PRESETS.get(config.preset)
    cmd = [
        config.python, "-m", "sglang.launch_server",
        "--model-path", str(config.model_path),
        "--host", config.host,
        "--port", str(port),
        "--weight-version", str(config.weight_version),
        *shlex.split(preset.args),
    ]  # fmt: skip
    if not config.tokenizer:
        cmd.append("--skip-tokenizer-init")
    return [*cmd, *config.extra_args]


def environment(config: ServerConfig) -> dict[str, str]:
    return {**os.environ, **dict(PRESETS.get(config.preset).env), **config.env}


def log_tail(path: str | os.PathLike, max_chars: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_chars))
            return f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(no log: {e})"


def is_healthy(url: str, timeout_s: float = 5.0) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False


def wait_healthy(url: str, timeout_s: float = 600.0, poll_s: float = 1.0) -> None:
    """Waits until `GET url/health` answers 200; raises ServerStartError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not is_healthy(url):
        if time.monotonic() > deadline:
            raise ServerStartError(f"{url} did not become healthy within {timeout_s:.0f} s")
        time.sleep(poll_s)


class ServerProcess:
    """A running server; `stop()` (or leaving the `with` block) ends its process group."""

    def __init__(self, config: ServerConfig, process: subprocess.Popen, port: int, log_path: str):
        self.config = config
        self.process = process
        self.port = port
        self.log_path = log_path
        self.url = f"http://{config.host}:{port}"
        atexit.register(self.stop)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while not is_healthy(self.url):
            if not self.alive():
                raise ServerStartError(
                    f"sglang server for {self.config.model_path} exited with code "
                    f"{self.process.returncode} before becoming healthy at {self.url}; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"sglang server at {self.url} not healthy after "
                    f"{self.config.startup_timeout_s:.0f} s; stopped it; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(1.0)

    def restart(self, model_path: str | None = None, weight_version: str | None = None) -> None:
        """Stop what is left of the server (its whole process group) and start it again on the
        same port, serving `model_path` tagged `weight_version` (default: what it started with);
        returns once it is healthy. The log file is appended to."""
        self.stop()
        changes: dict[str, str | int] = {"port": self.port, "log_path": self.log_path}
        if model_path is not None:
            changes["model_path"] = str(model_path)
        if weight_version is not None:
            changes["weight_version"] = str(weight_version)
        fresh = start(dataclasses.replace(self.config, **changes))
        atexit.unregister(fresh.stop)
        self.config, self.process = fresh.config, fresh.process
        atexit.register(self.stop)
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM to the process group, then SIGKILL after the grace period. Idempotent."""
        atexit.unregister(self.stop)
        _signal_group(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=self.config.stop_grace_s)
        # The group may outlive its leader (scheduler children): always make sure it is gone.
        _signal_group(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# Run first in the server's process, then exec'd into the server: the kernel SIGKILLs it when
# the process that started it dies (PR_SET_PDEATHSIG survives exec; SGLang's own workers die
# with it the same way), so a trainer killed with -9 leaves no server behind. A parent that
# died before the prctl is caught by the getppid check.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGKILL); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execvp(sys.argv[2], sys.argv[2:])"
)


def start(config: ServerConfig) -> ServerProcess:
    """Starts the server in its own process group; returns at once (see `launch`)."""
    port = config.port or free_port(config.host)
    if config.log_path is None:
        fd, log_path = tempfile.mkstemp(prefix=f"sglang-{port}-", suffix=".log")
        os.close(fd)
    else:
        log_path = config.log_path
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [config.python, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command(config, port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment(config),
            start_new_session=True,
        )
    return ServerProcess(config, process, port, log_path)


def launch(config: ServerConfig) -> ServerProcess:
    """Starts the server and waits until it is healthy (stopping it if it never is)."""
    server = start(config)
    try:
        server.wait_healthy()
    except BaseException:
        server.stop()
        raise
    return server


# ---------------------------------------------------------------------------------------------
# Foreground use: python -m pivotrl_jax.rollout.server (what launch/sglang_server.sh runs).


def _default_python(preset: str) -> str:
    cpu_venv = Path(__file__).resolve().parents[2] / ".venv-sglang" / "bin" / "python"
    return str(cpu_venv) if preset == "cpu" and cpu_venv.exists() else "python"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sglang_server",
        description="Start one SGLang server in the foreground with the project's flags. "
        "Arguments after `--` go to sglang.launch_server as they are.",
    )
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--preset", default="gpu", choices=PRESETS.names())
    parser.add_argument("--cpu", dest="preset", action="store_const", const="cpu",
                        help="the CPU test recipe (same as --preset cpu)")  # fmt: skip
    parser.add_argument("--python", help="interpreter with sglang installed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--weight-version", default="0")
    parser.add_argument("--tokenizer", action="store_true",
                        help="load the tokenizer (needed for text/chat endpoints)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    config = ServerConfig(
        model_path=args.model_path,
        preset=args.preset,
        python=args.python or _default_python(args.preset),
        host=args.host,
        port=args.port,
        weight_version=args.weight_version,
        tokenizer=args.tokenizer,
        extra_args=tuple(extra),
    )
    cmd = command(config, args.port)
    if args.dry_run:
        env = " ".join(f"{k}={v}" for k, v in PRESETS.get(config.preset).env)
        print(f"{env} {' '.join(cmd)}".strip())
        return
    os.execvpe(cmd[0], cmd, environment(config))


if __name__ == "__main__":
    main()
