"""Generators: determinism by seed, train/eval disjointness, the JSONL record format."""

import json

import pytest

from pivotrl_jax.envs import DOMAINS, generate_sft, generate_tasks
from pivotrl_jax.envs.sessions import find_session, session_ids


@pytest.mark.parametrize("domain", ["tool_use", "terminal", "ood"])
def test_same_seed_same_data_other_seed_other_data(domain):
    a = json.dumps(generate_sft(domain, 40, seed=11))
    assert a == json.dumps(generate_sft(domain, 40, seed=11))
    assert a != json.dumps(generate_sft(domain, 40, seed=12))
    assert generate_tasks(domain, 30, seed=4) == generate_tasks(domain, 30, seed=4)
    assert generate_tasks(domain, 30, seed=4) != generate_tasks(domain, 30, seed=5)


@pytest.mark.parametrize("domain", ["tool_use", "terminal", "ood"])
def test_training_and_evaluation_sessions_never_meet(domain):
    train = {s for seed in range(5) for s in session_ids(domain, "train", 500, seed)}
    evals = {s for seed in range(5) for s in session_ids(domain, "eval", 500, seed)}
    assert not train & evals
    assert all(s % 2 == 0 for s in train) and all(s % 2 == 1 for s in evals)
    assert len(session_ids(domain, "eval", 500, 0)) == 500  # distinct within a call
    sft_sessions = {r["metadata"]["session"] for r in generate_sft(domain, 50, seed=0)}
    assert sft_sessions <= train
    assert {t.session for t in generate_tasks(domain, 50, seed=0)} <= evals


def test_same_task_different_expert_seed_varies_the_actions():
    """Expert variation: across seeds, one task gets several different trajectories."""
    from pivotrl_jax.envs import expert_policy, run_episode

    for domain in ("tool_use", "terminal"):
        task = generate_tasks(domain, 1, seed=0)[0]
        runs = {json.dumps(run_episode(task, expert_policy(task, s)).messages) for s in range(12)}
        assert len(runs) >= 2, domain


@pytest.mark.parametrize("domain", ["tool_use", "terminal", "ood"])
def test_records_are_openai_chat(domain):
    for rec in generate_sft(domain, 60, seed=1):
        assert set(rec) == {"id", "domain", "messages", "tools", "metadata"}
        assert rec["domain"] == domain and rec["id"] == f"{domain}-{rec['metadata']['session']}"
        msgs = rec["messages"]
        assert [m["role"] for m in msgs[:2]] == ["system", "user"]
        assert msgs[-1]["role"] == "assistant" and not msgs[-1].get("tool_calls")
        if DOMAINS.get(domain).agentic:
            assert find_session(msgs) == rec["metadata"]["session"]
        names = {t["function"]["name"] for t in rec["tools"]}
        pending: list[str] = []
        for m in msgs[2:]:
            assert not pending or m["role"] == "tool"
            if m["role"] == "assistant" and m.get("tool_calls"):
                assert m["content"] == ""
                for c in m["tool_calls"]:
                    assert c["type"] == "function" and c["function"]["name"] in names
                    assert isinstance(json.loads(c["function"]["arguments"]), dict)
                    pending.append(c["id"])
            elif m["role"] == "tool":
                assert m["tool_call_id"] == pending.pop(0) and isinstance(m["content"], str)
        assert not pending


def test_unknown_domain_lists_the_known_ones():
    with pytest.raises(KeyError, match="ood, terminal, tool_use"):
        generate_tasks("chess", 1, seed=0)


def test_verifier_specs_build_and_ood_has_none():
    from pivotrl_jax.envs import verifier_spec
    from pivotrl_jax.rewards import build_verifier

    for domain in ("tool_use", "terminal"):
        assert (verifier_spec(domain).name, dict(verifier_spec(domain).params)) == (
            "env_acceptable",
            {"domain": domain, "progress": True},
        )
    for domain in ("tool_use", "terminal"):
        spec = verifier_spec(domain)
        build_verifier(spec.name, **spec.params)
    with pytest.raises(KeyError, match="not agentic"):
        verifier_spec("ood")


def test_data_do_not_depend_on_the_process_hash_seed():
    """Sandboxes rebuild tasks in other processes: generation must not follow set/hash order."""
    import hashlib
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, json; from pivotrl_jax.envs import generate_sft, generate_tasks;"
        "data = [generate_sft(d, 30, 2) for d in ('tool_use', 'terminal', 'ood')];"
        "canon = lambda t: {k: v.tree() if hasattr(v, 'tree') else v for k, v in vars(t).items()};"
        "tasks = [json.dumps([canon(t) for t in generate_tasks(d, 30, 2)], sort_keys=True)"
        " for d in ('tool_use', 'terminal', 'ood')];"
        "print(hashlib.sha256((json.dumps(data) + ''.join(tasks)).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1 and len(next(iter(digests))) == len(hashlib.sha256().hexdigest())
