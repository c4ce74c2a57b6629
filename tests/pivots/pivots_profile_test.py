"""`pivotrl profile` with the real in-process JAX engine on a tiny model: kill -9 / resume equals an
uninterrupted run; process slices cover every candidate once; SGLang and JAX agree greedily."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pivotrl_jax import cli
from pivotrl_jax.data import records as records_io
from pivotrl_jax.envs import generate_sft
from pivotrl_jax.pivots.profile import read_profiled

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "--config.profile.k=2",
    "--config.profile.max_new_tokens=6",
    "--config.profile.candidates_per_call=3",
    "--config.profile.seed=7",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny random model with the project tokenizer, and 14 tokenised candidates."""
    d = tmp_path_factory.mktemp("profile")
    model = d / "model"
    assert (
        cli.main(
            [
                "init-model",
                "--config=configs/model.py:tiny",
                "--config.tokenizer.vocab_size=300",
                "--config.model.num_hidden_layers=1",
                "--output",
                str(model),
            ]
        )
        == 0
    )
    rows = generate_sft("terminal", 2, seed=1) + generate_sft("tool_use", 2, seed=1)
    (d / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (
        cli.main(
            [
                "extract",
                "--input",
                str(d / "sft.jsonl"),
                "--output",
                str(d / "cands"),
                "--tokenizer",
                str(model),
            ]
        )
        == 0
    )
    n = records_io.count_records(d / "cands", prefix="candidates")
    assert n >= 9
    return d


def profile_argv(workdir, out, *extra):
    return [
        "profile",
        "--candidates",
        str(workdir / "cands"),
        "--output",
        str(out),
        f"--config.model_dir={workdir / 'model'}",
        "--noprogress",
        *SMALL,
        *extra,
    ]


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(workdir):
    ref_dir = workdir / "ref"
    assert cli.main(profile_argv(workdir, ref_dir)) == 0
    ref = read_profiled(ref_dir)
    n_cands = records_io.count_records(workdir / "cands", prefix="candidates")
    assert [r["id"] for r in ref] == sorted(
        r["id"] for r in records_io.read_records(workdir / "cands", prefix="candidates")
    )
    assert all(len(r["profile"]["rewards"]) == 2 for r in ref)

    out = workdir / "killed"
    journal = out / "journal-p00000-of-00001.jsonl"
    cmd = [sys.executable, "-m", "pivotrl_jax.cli", *profile_argv(workdir, out)]
    n_chunks = -(-n_cands // 3)
    kills = 0
    for stop_after in (1, 3):  # kill -9 once 1 chunk, then once 3 chunks are journaled
        if stop_after >= n_chunks:
            break
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= stop_after:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert not list(out.glob("summary-*.json"))
        # A torn final line (a kill mid-write) is recovered: simulate one on top.
        with open(journal, "ab") as f:
            f.write(b'{"unit": 99, "payl')
    assert kills >= 1
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not journal.exists()
    got = read_profiled(out)
    assert [r["id"] for r in got] == [r["id"] for r in ref]
    for a, b in zip(got, ref):
        assert a == b, a["id"]


@pytest.mark.slow
def test_process_slices_cover_every_candidate_once(workdir):
    out = workdir / "sharded"
    for pi in range(2):
        argv = profile_argv(workdir, out, "--process_index", str(pi), "--process_count", "2")
        assert cli.main(argv) == 0
    got = read_profiled(out)
    want = sorted(r["id"] for r in records_io.read_records(workdir / "cands", prefix="candidates"))
    assert [r["id"] for r in got] == want
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("summary-*.json"))]
    assert sum(s["candidates"] for s in summaries) == len(want)
    assert all(s["rollouts"] == 2 * s["candidates"] for s in summaries)


def test_unfinished_slices_are_refused(workdir):
    out = workdir / "half"
    assert cli.main(profile_argv(workdir, out, "--process_index", "0", "--process_count", "2")) == 0
    with pytest.raises(ValueError, match="not all processes finished"):
        read_profiled(out)


@pytest.mark.slow
@pytest.mark.sglang
def test_sglang_and_jax_profile_identically_when_greedy(workdir):
    sys.path.insert(0, str(REPO / "tests" / "rollout"))
    from sglang_support import SGLANG_PYTHON, require_sglang_env

    require_sglang_env()
    greedy = ["--config.profile.temperature=0.0", "--config.profile.k=1"]
    assert cli.main(profile_argv(workdir, workdir / "g_jax", *greedy)) == 0
    assert (
        cli.main(
            profile_argv(
                workdir,
                workdir / "g_sgl",
                *greedy,
                "--config.engine.name=sglang",
                f"--config.engine.python={SGLANG_PYTHON}",
            )
        )
        == 0
    )
    jax_recs, sgl_recs = read_profiled(workdir / "g_jax"), read_profiled(workdir / "g_sgl")
    assert len(jax_recs) == len(sgl_recs) > 0
    for a, b in zip(jax_recs, sgl_recs):
        for key in ("rewards", "completion_tokens", "finish_reasons", "verifier_reasons"):
            assert a["profile"][key] == b["profile"][key], (a["id"], key)
    assert jax_recs[0]["profile"]["provenance"]["engine"] == "jax"
    assert sgl_recs[0]["profile"]["provenance"]["engine"] == "sglang"


class ScriptedEngine:
    """Answers pivot p's g-th sample with its expected completion when plan[p][g] is True, else
    with a wrong tool call: the rewards are known by construction."""

    def __init__(self, tokenizer, pivots, plan):
        self.by_prompt = {tuple(p["prompt_ids"]): (p, row) for p, row in zip(pivots, plan)}
        self.tokenizer = tokenizer

    def generate(self, prompt_ids, params, n):
        from pivotrl_jax.rollout.base import Completion

        out = []
        for ids in prompt_ids:
            pivot, row = self.by_prompt[tuple(ids)]
            wrong = self.tokenizer.encode(
                '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call><|im_end|>',
                add_special_tokens=False,
            )
            group = []
            for g in range(n):
                toks = list(pivot["completion_ids"]) if row[g] else wrong
                group.append(Completion(toks, [0.0] * len(toks), "stop", 0))
            out.append(group)
        return out


def test_reprofile_flags_pivots_that_still_carry_signal(workdir):
    from transformers import AutoTokenizer

    from pivotrl_jax.pivots.profile import DomainVerifiers, ProfileConfig, reprofile
    from pivotrl_jax.rollout.text import completion_text

    tok = AutoTokenizer.from_pretrained(workdir / "model")
    cands = [
        r
        for r in records_io.read_records(workdir / "cands", prefix="candidates")
        if r["kind"] == "tool_call"
    ][:4]
    plan = [[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]]
    engine = ScriptedEngine(tok, cands, plan)
    recs, keep = reprofile(
        cands,
        engine,
        lambda ids: completion_text(tok, ids),
        DomainVerifiers(),
        ProfileConfig(k=4, candidates_per_call=3),
        lambda_diff=0.6,
    )
    assert [r["profile"]["rewards"] for r in recs] == [[float(x) for x in row] for row in plan]
    assert [r["profile"]["mean"] for r in recs] == [0.5, 1.0, 0.0, 0.25]
    assert keep == [True, False, False, True]
