#!/usr/bin/env bash
# Starts one SGLang rollout server in the foreground with the project's recommended flags.
#
#   launch/sglang_server.sh --model-path DIR [--port 30000] [--host 127.0.0.1] [-- SGLANG_ARGS...]
#   launch/sglang_server.sh --cpu --model-path DIR        # CPU test recipe, .venv-sglang
#   launch/sglang_server.sh --cpu --model-path DIR --dry-run   # print the command only
#
# GPU is the default (--python picks the interpreter with sglang; default `python`). --cpu uses
# the environment built by launch/sglang_cpu_env.sh. Binds 127.0.0.1 unless --host says otherwise.
# Arguments after `--` go to sglang.launch_server unchanged (e.g. -- --tp-size 8).
# The flags live in pivotrl_jax/rollout/server.py (PRESETS), shared with the Python lifecycle.
# Stop with Ctrl-C or SIGTERM to the process group.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PIVOTRL_PYTHON:-$ROOT/.venv/bin/python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m pivotrl_jax.rollout.server "$@"
