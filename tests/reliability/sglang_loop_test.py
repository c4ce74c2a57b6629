"""GRPO with the SGLang engine against the real CPU server, weights synced every step, and the
server killed under it.

One undisturbed run of 6 steps checks, after every weight sync: each rollout sample of the step
carried the step's weight version, and the server's logprobs of tokens it samples (temperature
1) on fixed prompts equal the JAX policy's logprobs of the same tokens within 1e-4 (float32).

A second run is disturbed: the server is SIGKILLed before a rollout and made to serve other
weights behind the engine's back (so its samples carry a wrong version); a third run also
has it SIGKILLed in the middle of a weight update and killed
from outside at a random moment. The engine restarts the server it manages on the latest
synced weights, regenerates the wrong-version samples, and each run ends with the undisturbed
run's parameters (bitwise) and metrics.

Sampling. SGLang honours `sampling_seed` only with `--enable-deterministic-inference`, which
refuses the CPU server's `torch_native` attention backend, so sampled rollouts cannot be made
reproducible on CPU. The equality runs use greedy rollouts (temperature 0) with an entropy
bonus (and every group kept), so every step still updates the weights, and without truncated
importance sampling, the one place where the engine's own logprobs (whose last bits depend on
how the server batched the requests) enter the loss.

`pivotrl profile` through the same engine, its server killed mid-run, ends with the records of
an undisturbed greedy profile (the in-process JAX engine's, which SGLang's greedy samples match
token for token).
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rollout"))
from crash import comparable_metrics
from sglang_support import SGLANG_PYTHON, require_sglang_env

# Minutes each on 2 CPU cores (a server start per run): `make reliability` only.
pytestmark = [pytest.mark.sglang, pytest.mark.slow, pytest.mark.long]
STEPS = 6
FIXED_PROMPTS = [[5, 17, 42, 99, 7], [250, 3, 3, 120], [64, 65, 66, 67, 68, 69, 70]]


def run_config(assets, greedy: bool):
    from pivotrl_jax import config as config_lib
    from pivotrl_jax.train.grpo_config import grpo_config

    cfg = config_lib.load_config(
        "configs/train.py:tiny",
        [
            f"model_dir={assets / 'model'}",
            f"pivots={assets / 'cands'}",
            "pivots_prefix=candidates",
            f"train.steps={STEPS}",
            "train.pivots_per_step=2",
            "train.drop_zero_variance=False",
            "rollout.group_size=3",
            "rollout.max_new_tokens=6",
            f"rollout.temperature={0.0 if greedy else 1.0}",
            "loss.entropy_coef=0.05",
            "engine.name=sglang",
            "engine.preset=cpu",
            f"engine.python={SGLANG_PYTHON}",
            "checkpoint.every=3",
            "log.progress=False",
            "log.tensorboard=False",
        ],
    )
    g = grpo_config(cfg)
    return dataclasses.replace(g, loss=dataclasses.replace(g.loss, tis_cap=None)), cfg


class Watched:
    """The engine behind the loop: records each completion's weight version, and runs the
    test's faults at chosen calls."""

    def __init__(self, engine, before_generate=None, before_update=None):
        self.engine = engine
        self.versions: list[str] = []
        self.before_generate = before_generate or {}
        self.before_update = before_update or {}
        self.generate_calls = self.update_calls = 0

    def generate(self, prompt_ids, params, n=1):
        self.generate_calls += 1
        if self.generate_calls in self.before_generate:
            self.before_generate[self.generate_calls]()
        groups = self.engine.generate(prompt_ids, params, n)
        self.versions += [str(c.weight_version) for g in groups for c in g]
        return groups

    def update_weights(self, source, version):
        self.update_calls += 1
        if self.update_calls in self.before_update:
            self.before_update[self.update_calls]()
        self.engine.update_weights(source, version)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def jax_logprob_gap(parts, prompts, groups) -> float:
    """max |engine logprob - JAX policy logprob| over every sampled token."""
    from pivotrl_jax.train.batching import Sequence, make_batch
    from pivotrl_jax.train.step import place_batch

    seqs = [
        Sequence(tuple(p), c.token_ids, c.logprobs, 0.0)
        for p, g in zip(prompts, groups)
        for c in g
        if c.token_ids
    ]
    host = make_batch(seqs, length_buckets=parts.cfg.buckets())
    lp = np.asarray(parts.logprobs_fn(parts.state.params, place_batch(host, parts.policy)))
    mask = np.asarray(host.loss_mask) > 0
    return float(np.max(np.abs(lp - np.asarray(host.behaviour_logprobs))[mask]))


def listening_addresses(port: int) -> set[str]:
    """The local IPv4/IPv6 addresses with a socket listening on `port` (/proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if len(address) == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
                else:
                    found.add(address)
    return found


def train_run(assets, out: Path, faults=None):
    """One in-process GRPO run on a managed SGLang server; `faults(engine, server)` returns the
    (before_generate, before_update) fault tables. Returns (parts, checks per step, engine)."""
    from transformers import AutoTokenizer

    from pivotrl_jax.commands.train import load_pivots, scorer_from_config
    from pivotrl_jax.data import loader
    from pivotrl_jax.models.sharding import single_device_mesh
    from pivotrl_jax.rollout.base import SamplingParams
    from pivotrl_jax.rollout.factory import open_engine
    from pivotrl_jax.rollout.text import completion_text
    from pivotrl_jax.train import loop
    from pivotrl_jax.train.parts import build_parts

    gcfg, cfg = run_config(assets, greedy=True)
    tok = AutoTokenizer.from_pretrained(gcfg.model_dir)
    mesh = single_device_mesh()
    data = iter(load_pivots(loader, gcfg, tok))
    params, model_config = loop.initial_params(gcfg.model_dir, mesh, {})
    checks = []
    with open_engine(gcfg.engine, gcfg.model_dir, mesh) as engine:
        (server,) = engine._managed.values()
        before_generate, before_update = faults(engine, server) if faults else ({}, {})
        watched = Watched(engine, before_generate, before_update)
        parts = build_parts(
            gcfg, mesh, watched, lambda ids: completion_text(tok, ids), (tok.eos_token_id,),
            scorer_from_config(cfg), data, params, model_config,
        )  # fmt: skip

        def step(parts, it, workdir):
            start = len(watched.versions)
            metrics, updated = loop.iteration(parts, it, workdir)
            rollout_versions = set(watched.versions[start:])
            assert updated  # the entropy bonus moves the weights every step
            probe = watched.engine.generate(
                FIXED_PROMPTS, SamplingParams(temperature=1.0, max_new_tokens=4, seed=it), n=2
            )
            checks.append(
                {
                    "step": it + 1,
                    "rollout_versions": rollout_versions,
                    "probe_versions": {str(c.weight_version) for g in probe for c in g},
                    "gap": jax_logprob_gap(parts, FIXED_PROMPTS, probe),
                    "listening": listening_addresses(server.port),
                }
            )
            return metrics, updated

        summary = loop.run(parts, out, step)
        stats = dict(engine.stats)
    return parts, checks, summary, stats, server


@pytest.fixture(scope="module")
def undisturbed(assets, tmp_path_factory):
    require_sglang_env()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = tmp_path_factory.mktemp("sglang_undisturbed")
    return out, *train_run(assets, out)


def test_weights_sync_every_step_and_logprobs_match_jax(undisturbed):
    _, _, checks, summary, stats, _ = undisturbed
    assert summary["weight_version"] == STEPS and summary["optimizer_steps"] == STEPS
    assert [c["step"] for c in checks] == list(range(1, STEPS + 1))
    for c in checks:
        # Rollouts of step s ran on the weights of version s - 1; the sync made them s.
        assert c["rollout_versions"] == {str(c["step"] - 1)}, c
        assert c["probe_versions"] == {str(c["step"])}, c
        assert c["gap"] <= 1e-4, c
    assert stats.get("restarts", 0) == 0
    assert checks[0]["listening"] == {"127.0.0.1"}  # the server binds the loopback only


def _faults(which: tuple[str, ...], assets):
    """The disturbances of a run, by name, at fixed rollout / weight-update calls."""

    def table(engine, server):
        timers: list[threading.Timer] = []

        def kill():
            os.killpg(server.pid, signal.SIGKILL)

        def kill_soon():  # lands while the server loads the new weights (or just after)
            timers.append(threading.Timer(0.3, kill))
            timers[-1].start()

        def serve_other_weights():  # behind the engine's back: the start-up weights, version 0
            import requests

            from pivotrl_jax.rollout.base import SamplingParams

            # An earlier kill may land after its call returned; the desync needs a live
            # server, so the engine (which restarts a dead server it manages) is asked first.
            for t in timers:
                t.join()
            deadline = time.monotonic() + 60
            while server.alive() and time.monotonic() < deadline:
                try:  # a killed process may take a moment to exit
                    requests.get(f"{server.url}/model_info", timeout=5).raise_for_status()
                    break
                except requests.RequestException:
                    time.sleep(0.2)
            if not server.alive():
                greedy_token = SamplingParams(temperature=0.0, max_new_tokens=1)
                engine.generate(FIXED_PROMPTS[:1], greedy_token)
            body = {"model_path": str(assets / "model"), "weight_version": "0"}
            requests.post(f"{server.url}/update_weights_from_disk", json=body, timeout=300)

        def random_kill():
            threading.Timer(random.Random(0).uniform(0.0, 5.0), kill).start()

        before_generate = {2: kill, 4: serve_other_weights, 5: random_kill}
        before_update = {3: kill_soon}
        named = {
            "kill_before_rollout": (before_generate, 2),
            "desync": (before_generate, 4),
            "random_kill": (before_generate, 5),
            "kill_mid_update": (before_update, 3),
        }
        chosen: tuple[dict, dict] = ({}, {})
        for name in which:
            where, call = named[name]
            chosen[0 if where is before_generate else 1][call] = where[call]
        return chosen

    return table


def _check_disturbed(undisturbed, assets, tmp_path, which):
    import jax

    from pivotrl_jax.train.metrics import read_metrics

    ref_dir, ref_parts = undisturbed[0], undisturbed[1]
    parts, checks, summary, stats, _ = train_run(assets, tmp_path, _faults(which, assets))
    assert summary["weight_version"] == STEPS
    kills = sum(w != "desync" for w in which)
    assert stats.get("restarts", 0) >= min(kills, 2), stats
    assert ("desync" in which) == (stats.get("regenerated_samples", 0) > 0), stats
    for c in checks:
        assert c["rollout_versions"] == {str(c["step"] - 1)}, c  # wrong-version samples redone
        assert c["gap"] <= 1e-4, c
    for x, y in zip(jax.tree.leaves(ref_parts.state.params), jax.tree.leaves(parts.state.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    got = comparable_metrics(read_metrics(tmp_path))
    want = comparable_metrics(read_metrics(ref_dir))

    def engine_free(rows):  # mismatch/*: the engine's own logprobs against the trainer's
        return [{k: v for k, v in r.items() if not k.startswith("mismatch/")} for r in rows]

    assert engine_free(got) == engine_free(want)
    for a, b in zip(got, want):
        assert abs(a["mismatch/max_abs"] - b["mismatch/max_abs"]) < 1e-5


def test_server_killed_and_desynced_mid_train_the_run_still_matches(undisturbed, assets, tmp_path):
    _check_disturbed(undisturbed, assets, tmp_path, ("kill_before_rollout", "desync"))


def test_server_killed_four_ways_mid_train_the_run_still_matches(undisturbed, assets, tmp_path):
    which = ("kill_before_rollout", "kill_mid_update", "desync", "random_kill")
    _check_disturbed(undisturbed, assets, tmp_path, which)


def sglang_servers() -> list[int]:
    """Process ids of the SGLang servers started by this process (its children)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"sglang.launch_server" in cmdline:
            out.append(int(proc.name))
    return out


def test_server_killed_mid_profile_the_records_match(assets, tmp_path):
    """The server is killed from outside (kill -9 of its process group) once two profiling
    chunks are journaled; the engine restarts it and the profile completes."""
    require_sglang_env()
    import pivotrl_with_test_verifier  # noqa: F401

    from pivotrl_jax import cli
    from pivotrl_jax.pivots.profile import read_profiled

    argv = ["profile", "--config=configs/profile.py:greedy", "--candidates", str(assets / "cands"),
            f"--config.model_dir={assets / 'model'}", "--noprogress",
            "--config.profile.max_new_tokens=6",
            "--config.profile.candidates_per_call=8"]  # fmt: skip
    assert cli.main([*argv, "--output", str(tmp_path / "jax")]) == 0
    out = tmp_path / "sglang"
    journal = out / "journal-p00000-of-00001.jsonl"
    killed = []

    def killer():
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 2:
                for pid in sglang_servers():
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    sgl = [*argv, "--config.engine.name=sglang", f"--config.engine.python={SGLANG_PYTHON}"]
    assert cli.main([*sgl, "--output", str(out)]) == 0
    thread.join(timeout=5)
    assert killed  # the kill landed mid-profile (6 chunks, killed after 2)
    want, got = read_profiled(tmp_path / "jax"), read_profiled(out)
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for a, b in zip(want, got):
        for key in ("rewards", "completion_tokens", "finish_reasons", "verifier_reasons"):
            assert a["profile"][key] == b["profile"][key], (a["id"], key)
