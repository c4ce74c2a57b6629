"""SglangEngine against a real CPU SGLang server serving a tiny random Qwen3 (dense).

Reference: a transformers float32 forward of the same model on the same tokens. One server for
the module; its last test kills it mid-request.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from sglang_support import (
    CONTEXT,
    build_model,
    greedy_reference,
    launch_cpu_server,
    max_logprob_diff,
    random_prompts,
    require_sglang_env,
)

from pivotrl_jax.rollout.base import SamplingParams
from pivotrl_jax.rollout.registry import ENGINES
from pivotrl_jax.rollout.server import free_port, is_healthy
from pivotrl_jax.rollout.sglang_engine import (
    EngineClosedError,
    PromptTooLongError,
    SglangEngine,
    SglangEngineOptions,
    SglangError,
    WeightVersionError,
)

pytestmark = [pytest.mark.sglang, pytest.mark.slow]
TOL = 1e-5
# Long enough to be still running a second after it is sent (4 x 480 tokens on 2 CPU cores).
LONG = SamplingParams(max_new_tokens=480)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_sglang_env()
    root = tmp_path_factory.mktemp("sglang_dense")
    models = {
        "a": build_model("dense", root / "a", seed=0),
        "b": build_model("dense", root / "b", seed=1),
    }
    server = launch_cpu_server(root / "a", root / "server.log", weight_version="0")
    yield server, models, root
    server.stop()


@pytest.fixture
def engine(served):
    server, _, _ = served
    engine = SglangEngine([server.url], options=SglangEngineOptions(retries=1, backoff_s=0.05))
    yield engine
    engine.close()


def test_registered_by_name(served):
    server, _, _ = served
    engine = ENGINES.get("sglang")([server.url])
    assert isinstance(engine, SglangEngine)
    assert engine.weight_version == "0"  # read from the server's /model_info
    engine.close()


def test_sampled_logprobs_match_transformers(served, engine):
    _, models, _ = served
    prompts = random_prompts([3, 17, 40], seed=0)
    params = SamplingParams(temperature=1.0, max_new_tokens=12)
    groups = engine.generate(prompts, params, n=2)
    assert [len(g) for g in groups] == [2, 2, 2]
    for group in groups:
        for c in group:
            assert len(c.token_ids) == 12 and len(c.logprobs) == 12
            assert c.finish_reason == "length"
            assert c.weight_version == "0"
    assert max_logprob_diff(models["a"], prompts, groups) <= TOL


def test_greedy_matches_transformers_argmax_and_is_deterministic(served, engine):
    _, models, _ = served
    prompt = random_prompts([9], seed=1)[0]
    params = SamplingParams(temperature=0.0, max_new_tokens=10)
    first = engine.generate([prompt], params)[0][0]
    second = engine.generate([prompt], params)[0][0]
    tokens, logps = greedy_reference(models["a"], prompt, 10)
    assert first.token_ids == second.token_ids == tuple(tokens)
    np.testing.assert_allclose(first.logprobs, logps, atol=TOL, rtol=0)


def test_top_k_1_samples_the_argmax_with_untruncated_logprobs(served, engine):
    _, models, _ = served
    prompt = random_prompts([6], seed=2)[0]
    c = engine.generate([prompt], SamplingParams(temperature=1.0, top_k=1, max_new_tokens=6))[0][0]
    tokens, logps = greedy_reference(models["a"], prompt, 6)
    assert c.token_ids == tuple(tokens)
    # The reported logprob is the full distribution's, not the top-1-renormalised 0.0.
    np.testing.assert_allclose(c.logprobs, logps, atol=TOL, rtol=0)


def test_stop_token_ends_completion_and_is_kept(served, engine):
    _, models, _ = served
    prompt = random_prompts([7], seed=3)[0]
    tokens, _ = greedy_reference(models["a"], prompt, 8)
    stop = tokens[4]
    first = tokens.index(stop)  # the stop token may occur earlier than position 4
    params = SamplingParams(temperature=0.0, max_new_tokens=8, stop_token_ids=(stop,))
    c = engine.generate([prompt], params)[0][0]
    assert c.finish_reason == "stop"
    assert c.token_ids == tuple(tokens[: first + 1])


def test_n_samples_per_prompt_in_prompt_order(served, engine):
    _, models, _ = served
    prompts = random_prompts([4, 30], seed=4)
    groups = engine.generate(prompts, SamplingParams(max_new_tokens=5), n=4)
    assert [len(g) for g in groups] == [4, 4]
    # 4 independent 5-token samples from distributions this spread are not all equal.
    assert len({c.token_ids for c in groups[0]}) > 1
    # Each logprob matches its own prompt's reference: samples are not swapped across prompts.
    assert max_logprob_diff(models["a"], prompts, groups) <= TOL


def test_seeded_samples_get_distinct_requests(served, engine):
    _, models, _ = served
    prompts = random_prompts([5], seed=5)
    groups = engine.generate(prompts, SamplingParams(max_new_tokens=5, seed=7), n=3)
    assert len(groups[0]) == 3
    assert max_logprob_diff(models["a"], prompts, groups) <= TOL


def test_update_weights_from_disk_switches_logprobs_and_version(served, engine):
    _, models, root = served
    prompts = random_prompts([8, 12], seed=6)
    try:
        engine.update_weights(root / "b", version=1)
        assert engine.last_refit_s is not None and engine.last_refit_s > 0
        groups = engine.generate(prompts, SamplingParams(max_new_tokens=6), n=2)
        assert all(c.weight_version == 1 for g in groups for c in g)
        assert max_logprob_diff(models["b"], prompts, groups) <= TOL
        assert max_logprob_diff(models["a"], prompts, groups) > 1e-2
        # A callable source: the folder it returns is loaded.
        engine.update_weights(lambda: str(root / "a"), version="v2")
        groups = engine.generate(prompts, SamplingParams(max_new_tokens=6))
        assert all(c.weight_version == "v2" for g in groups for c in g)
        assert max_logprob_diff(models["a"], prompts, groups) <= TOL
    finally:
        engine.update_weights(root / "a", version="0")


def test_refit_from_the_project_hf_export(served, engine):
    """The trainer's path: our JAX model exported with models.weights.export_hf, then served."""
    from pivotrl_jax.models.weights import export_hf, load_hf

    _, models, root = served
    model, config = load_hf(root / "b")
    prompts = random_prompts([9, 14], seed=10)
    try:
        engine.update_weights(lambda: export_hf(model, config, root / "export"), version="jax-1")
        groups = engine.generate(prompts, SamplingParams(max_new_tokens=6), n=2)
        assert all(c.weight_version == "jax-1" for g in groups for c in g)
        assert max_logprob_diff(models["b"], prompts, groups) <= TOL
    finally:
        engine.update_weights(root / "a", version="0")


def test_stale_weight_version_raises(served):
    server, _, _ = served
    stale = SglangEngine([server.url], weight_version=41)
    with pytest.raises(WeightVersionError, match=r"expected '41'") as info:
        stale.generate([[1, 2, 3]], SamplingParams(max_new_tokens=2))
    assert server.url in str(info.value) and "rid" in str(info.value)
    stale.close()


def test_failed_weight_update_names_the_server(served, engine, tmp_path):
    server, _, _ = served
    with pytest.raises(SglangError, match="update") as info:
        engine.update_weights(tmp_path / "no-such-model", version=5)
    assert server.url in str(info.value)
    assert engine.weight_version == "0"  # unchanged: later completions still check out
    assert engine.generate([[1, 2]], SamplingParams(max_new_tokens=2))[0][0].weight_version == "0"


def test_prompt_longer_than_context(served, engine):
    server, _, _ = served
    prompt = random_prompts([CONTEXT + 20], seed=8)[0]
    # Refused by the server (no context_length configured): a 4xx, not retried.
    with pytest.raises(PromptTooLongError, match="context length") as info:
        engine.generate([prompt], SamplingParams(max_new_tokens=4))
    assert server.url in str(info.value) and "rid" in str(info.value)
    # Checked before sending.
    checked = SglangEngine([server.url], options=SglangEngineOptions(context_length=CONTEXT))
    expected = "prompt 0 has 532 tokens; with max_new_tokens=4 at most 505 fit"
    with pytest.raises(PromptTooLongError, match=expected):
        checked.generate([prompt], SamplingParams(max_new_tokens=4))
    checked.close()
    # Left truncation keeps the newest tokens that fit: CONTEXT - max_new_tokens, and fewer than
    # the server's max_req_input_len (CONTEXT - 6 here).
    left = SglangEngine(
        [server.url], options=SglangEngineOptions(context_length=CONTEXT, truncation="left")
    )
    keep = CONTEXT - 7
    params = SamplingParams(temperature=0.0, max_new_tokens=4)
    truncated = left.generate([prompt], params)[0][0]
    reference = engine.generate([prompt[-keep:]], params)[0][0]
    assert truncated.token_ids == reference.token_ids
    with pytest.raises(PromptTooLongError):
        engine.generate([prompt[-(keep + 1) :]], params)
    left.close()


def test_failover_to_the_next_server(served):
    server, models, _ = served
    dead = f"http://127.0.0.1:{free_port()}"
    engine = SglangEngine(
        [dead, server.url], weight_version="0",
        options=SglangEngineOptions(retries=2, backoff_s=0.01),
    )  # fmt: skip
    prompts = random_prompts([5, 6, 7], seed=9)
    groups = engine.generate(prompts, SamplingParams(max_new_tokens=3))
    assert max_logprob_diff(models["a"], prompts, groups) <= TOL
    engine.close()


def once_in_flight(engine: SglangEngine, settle_s: float = 0.25) -> None:
    """Return `settle_s` after the engine has posted a request (so that the server has it), well
    before a LONG generation ends (about 1 s for 4 samples on 2 cores): a fixed sleep from
    the call's start raced the generation."""
    deadline = time.monotonic() + 60
    while not engine._in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(settle_s)


def test_close_aborts_requests_in_flight(served):
    server, _, _ = served
    engine = SglangEngine([server.url])
    result: dict[str, object] = {}

    def run():
        try:
            result["groups"] = engine.generate([[1, 2, 3]], LONG, n=4)
        except EngineClosedError as e:
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    once_in_flight(engine)
    engine.close()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert "groups" in result, result
    for c in result["groups"][0]:
        assert c.finish_reason == "abort" and len(c.token_ids) < LONG.max_new_tokens
    with pytest.raises(EngineClosedError):
        engine.generate([[1]], SamplingParams(max_new_tokens=1))
    assert is_healthy(server.url)  # the server itself goes on


def test_server_killed_mid_request_fails_after_retries(served):
    """Last in the module: it kills the server."""
    server, _, _ = served
    engine = SglangEngine([server.url], options=SglangEngineOptions(retries=2, backoff_s=0.05))
    killer = threading.Thread(
        target=lambda: (once_in_flight(engine), os.killpg(server.pid, signal.SIGKILL))
    )
    killer.start()
    start = time.monotonic()
    with pytest.raises(SglangError, match="failed after 3 attempts") as info:
        engine.generate([[4, 5, 6]], LONG, n=4)
    killer.join()
    assert time.monotonic() - start < 60
    assert server.url in str(info.value) and "rid" in str(info.value)
    assert "ConnectionError" in str(info.value)
    engine.close()
