"""The launch scripts: --help, --dry-run against the exact commands they would run, shellcheck;
and every `pivotrl` command's --help anywhere, even with PIVOTRL_DISTRIBUTED=1 and no cluster."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pivotrl_jax import config as config_lib

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["launch/tpu_pod.sh", "launch/gpu_host.sh", "launch/slurm.sbatch"]
ALL_SCRIPTS = [*SCRIPTS, "launch/sglang_server.sh", "launch/local.sh", "launch/lib.sh"]
URLS2 = '--config.engine.urls=("http://127.0.0.1:30000","http://127.0.0.1:30001",)'


def launch(*argv: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIVOTRL_", "SLURM_"))}
    clean.pop("XLA_FLAGS", None)
    return subprocess.run(
        [str(REPO / argv[0]), *argv[1:]],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def dry_run(*argv: str) -> str:
    proc = launch(argv[0], "--dry-run", *argv[1:])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_shellcheck_passes():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    assert Path(shellcheck).exists(), "shellcheck missing: pip install -r requirements-extra.txt"
    proc = subprocess.run(
        [shellcheck, "-x", *ALL_SCRIPTS], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", [*SCRIPTS, "launch/local.sh"])
def test_help_is_the_usage_text(script):
    proc = launch(script, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--dry-run" in proc.stdout and "--help" in proc.stdout
    assert not proc.stdout.startswith(("!", "#", "/")), proc.stdout[:80]


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_option_and_missing_command_fail_clearly(script):
    proc = launch(script, "--no-such-option", "--", "train")
    assert proc.returncode == 2 and "unknown option --no-such-option" in proc.stderr
    proc = launch(script, "--dry-run", "--nodes", "n1") if "slurm" in script else launch(script)
    assert proc.returncode == 2 and "no pivotrl command given" in proc.stderr


def test_tpu_pod_dry_run():
    cmd = ["train", "--config=configs/train.py", '--config.engine.urls=("a b",)', "--output", "r"]
    assert dry_run("launch/tpu_pod.sh", "--", *cmd) == (
        "env PIVOTRL_DISTRIBUTED=1 TPU_STDERR_LOG_LEVEL=1 .venv/bin/python -m pivotrl_jax.cli "
        "train --config=configs/train.py '--config.engine.urls=(\"a b\",)' --output r\n"
    )
    out = dry_run(
        "launch/tpu_pod.sh", "--tpu", "v5p-64", "--zone", "z1", "--project", "p", "--", *cmd
    )
    assert out == (
        "gcloud compute tpus tpu-vm ssh v5p-64 --zone=z1 --worker=all '--command=cd pivotrl-jax "
        "&& launch/tpu_pod.sh -- train --config=configs/train.py "
        "'\\''--config.engine.urls=(\"a b\",)'\\'' --output r' --project=p\n"
    )
    # The remote command, read back by a shell, is the worker form of the same command.
    remote = shlex.split(out)[8][len("--command=") :]
    assert shlex.split(remote) == ["cd", "pivotrl-jax", "&&", "launch/tpu_pod.sh", "--", *cmd]


def test_gpu_host_dry_run_servers_then_trainer_on_the_rest():
    out = dry_run(
        "launch/gpu_host.sh", "--gpus", "0,1,2,3", "--servers", "2", "--mem-fraction", "0.7",
        "--", "train", "--config.model_dir=runs/base", "--output", "runs/t",
    )  # fmt: skip
    assert out == textwrap.dedent(
        """\
        mkdir -p logs
        env CUDA_VISIBLE_DEVICES=0 launch/sglang_server.sh --model-path runs/base --port 30000 --python python -- --mem-fraction-static 0.7 > logs/sglang-30000.log 2>&1 &
        env CUDA_VISIBLE_DEVICES=1 launch/sglang_server.sh --model-path runs/base --port 30001 --python python -- --mem-fraction-static 0.7 > logs/sglang-30001.log 2>&1 &
        until curl -sf http://127.0.0.1:30000/health >/dev/null; do sleep 2; done  # at most 600 s
        until curl -sf http://127.0.0.1:30001/health >/dev/null; do sleep 2; done  # at most 600 s
        env CUDA_VISIBLE_DEVICES=2,3 XLA_PYTHON_CLIENT_MEM_FRACTION=0.85 NCCL_DEBUG=WARN XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true .venv/bin/python -m pivotrl_jax.cli train --config.model_dir=runs/base --output runs/t --config.engine.name=sglang '--config.engine.urls=("http://127.0.0.1:30000","http://127.0.0.1:30001",)'
        """  # noqa: E501
    )
    # The trainer's engine overrides are valid config keys and values.
    trainer = shlex.split(out.splitlines()[-1])
    overrides = [a[len("--config.") :] for a in trainer if a.startswith("--config.engine")]
    cfg = config_lib.load_config("configs/train.py", overrides)
    assert cfg.engine.name == "sglang"
    assert cfg.engine.urls == ("http://127.0.0.1:30000", "http://127.0.0.1:30001")


def test_gpu_host_dry_run_colocated_and_in_process():
    out = dry_run(
        "launch/gpu_host.sh", "--gpus", "0,1", "--servers", "1", "--server-gpus", "1",
        "--colocate", "--port", "31000", "--model-path", "m", "--", "profile",
    )  # fmt: skip
    assert out.splitlines()[1:] == [
        "env CUDA_VISIBLE_DEVICES=1 launch/sglang_server.sh --model-path m --port 31000 "
        "--python python -- --mem-fraction-static 0.3 > logs/sglang-31000.log 2>&1 &",
        "until curl -sf http://127.0.0.1:31000/health >/dev/null; do sleep 2; done  # at most "
        "600 s",
        "env CUDA_VISIBLE_DEVICES=0,1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.6 NCCL_DEBUG=WARN "
        "XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true .venv/bin/python -m "
        "pivotrl_jax.cli profile --config.engine.name=sglang "
        "'--config.engine.urls=(\"http://127.0.0.1:31000\",)'",
    ]
    out = dry_run(
        "launch/gpu_host.sh", "--gpus", "0,1", "--", "train", "--config.mesh_shape=(1,-1,1,1)"
    )
    assert out == (
        "env CUDA_VISIBLE_DEVICES=0,1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.85 NCCL_DEBUG=WARN "
        "XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true .venv/bin/python -m "
        "pivotrl_jax.cli train '--config.mesh_shape=(1,-1,1,1)'\n"
    )
    assert config_lib.load_config("configs/train.py", ["mesh_shape=(1,-1,1,1)"]).mesh_shape == (
        1, -1, 1, 1,
    )  # fmt: skip


def test_gpu_host_refuses_what_cannot_work():
    proc = launch(
        "launch/gpu_host.sh", "--dry-run", "--gpus", "0,1", "--servers", "2", "--", "train"
    )
    assert proc.returncode == 2 and "no GPU left for the trainer" in proc.stderr
    proc = launch(
        "launch/gpu_host.sh", "--dry-run", "--gpus", "0,1", "--servers", "1", "--", "train"
    )
    assert proc.returncode == 2 and "the servers need --model-path" in proc.stderr


def test_slurm_dry_run_servers_router_and_trainer_step():
    out = dry_run(
        "launch/slurm.sbatch", "--nodes", "n1 n2 n3 n4", "--sglang-nodes", "2",
        "--gpus-per-node", "4", "--", "train", "--config.model_dir=/shared/base",
    )  # fmt: skip
    assert out == textwrap.dedent(
        """\
        mkdir -p logs/slurm-local
        srun --nodes=1 --ntasks=1 --nodelist=n3 launch/sglang_server.sh --model-path /shared/base --host n3 --port 30000 --python python -- --tp-size 4 > logs/slurm-local/sglang-n3.log 2>&1 &
        srun --nodes=1 --ntasks=1 --nodelist=n4 launch/sglang_server.sh --model-path /shared/base --host n4 --port 30000 --python python -- --tp-size 4 > logs/slurm-local/sglang-n4.log 2>&1 &
        until curl -sf http://n3:30000/health >/dev/null; do sleep 2; done  # at most 900 s
        until curl -sf http://n4:30000/health >/dev/null; do sleep 2; done  # at most 900 s
        srun --nodes=1 --ntasks=1 --overlap --nodelist=n3 python -m sglang_router.launch_router --worker-urls http://n3:30000 http://n4:30000 --host n3 --port 30080 --policy cache_aware > logs/slurm-local/router.log 2>&1 &
        until curl -sf http://n3:30080/health >/dev/null; do sleep 2; done  # at most 900 s
        echo 'router: http://n3:30080'
        srun --nodes=2 --ntasks-per-node=1 --nodelist=n1,n2 --kill-on-bad-exit=1 env PIVOTRL_DISTRIBUTED=1 .venv/bin/python -m pivotrl_jax.cli train --config.model_dir=/shared/base --config.engine.name=sglang '--config.engine.urls=("http://n3:30000","http://n4:30000",)'
        """  # noqa: E501
    )
    out = dry_run("launch/slurm.sbatch", "--nodes", "a b", "--", "train", "--output", "r")
    assert out == (
        "srun --nodes=2 --ntasks-per-node=1 --nodelist=a,b --kill-on-bad-exit=1 env "
        "PIVOTRL_DISTRIBUTED=1 .venv/bin/python -m pivotrl_jax.cli train --output r\n"
    )


def test_local_dry_run():
    assert dry_run("launch/local.sh", "--sim-devices", "8", "--", "train", "--output", "r") == (
        "env XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu "
        ".venv/bin/python -m pivotrl_jax.cli train --output r\n"
    )


def test_sglang_server_dry_run_uses_the_project_environment(tmp_path):
    out = dry_run(
        "launch/sglang_server.sh", "--model-path", "m", "--python", "py", "--", "--tp-size", "2"
    )
    assert out == (
        "py -m sglang.launch_server --model-path m --host 127.0.0.1 --port 30000 "
        "--weight-version 0 --dtype auto --mem-fraction-static 0.8 --skip-tokenizer-init "
        "--tp-size 2\n"
    )
    proc = launch("launch/sglang_server.sh", "--help")
    assert proc.returncode == 0 and "--dry-run" in proc.stdout


def test_every_command_help_works_anywhere_without_a_cluster(tmp_path):
    """PIVOTRL_DISTRIBUTED=1 with no coordinator: --help must not start jax.distributed."""
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        from pivotrl_jax import cli, distributed
        for name in sorted(cli.COMMANDS):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = cli.main([name, "--help"])
            text = out.getvalue()
            assert rc == 0 and text.startswith(f"usage: pivotrl {name}"), (name, rc, text)
            assert "--" in text, (name, text)
        assert not distributed._initialized
        print("HELP-OK", len(cli.COMMANDS))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTRL_")}
    env.update(PIVOTRL_DISTRIBUTED="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HELP-OK 12"
    # Through the pod launcher, for real: the project's interpreter, no cluster, a help text.
    proc = launch("launch/tpu_pod.sh", "--", "train", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: pivotrl train") and "--output" in proc.stdout
