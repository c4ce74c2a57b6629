"""SglangEngine's error handling against stand-in HTTP servers (no SGLang needed).

A dead port, a server answering 503 then 200, a server refusing with 400, a server that drops
the connection: retries happen only where they should, each error names URL and request id.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pivotrl_jax.rollout.base import SamplingParams
from pivotrl_jax.rollout.server import free_port
from pivotrl_jax.rollout.sglang_engine import (
    EngineClosedError,
    PromptTooLongError,
    SglangEngine,
    SglangEngineOptions,
    SglangError,
    WeightSyncError,
)

FAST = SglangEngineOptions(retries=2, backoff_s=0.01, connect_timeout_s=2.0)
PARAMS = SamplingParams(max_new_tokens=2)


def reply_for(body: dict, version: str = "0") -> dict:
    """What SGLang answers to /generate: two tokens per sample."""
    item = {
        "output_ids": [7, 8],
        "meta_info": {
            "id": body["rid"],
            "finish_reason": {"type": "length", "length": 2},
            "weight_version": version,
            "weight_versions": [{"version": version, "start": 0, "end": 2}],
            "output_token_logprobs": [[-0.5, 7, None], [-1.5, 8, None]],
        },
    }
    n = body["sampling_params"]["n"]
    return item if n == 1 else [item] * n


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: object) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Stub:
    """A local HTTP server answering with `script`: a list of (status, payload-or-None) popped
    per request; None as payload echoes a valid /generate reply; "drop" closes the socket."""

    def __init__(self, script: list[tuple[int, object]]):
        self.script = list(script)
        self.requests: list[tuple[str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((self.path, body))
                status, payload = stub.script.pop(0) if stub.script else (200, None)
                if payload == "drop":
                    self.connection.close()
                    return
                send_json(self, status, reply_for(body) if payload is None else payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub_factory() -> Iterator:
    stubs = []

    def make(script):
        stubs.append(Stub(script))
        return stubs[-1]

    yield make
    for s in stubs:
        s.close()


def test_unreachable_server_fails_after_retries():
    url = f"http://127.0.0.1:{free_port()}"
    engine = SglangEngine([url], weight_version=0, options=FAST)
    with pytest.raises(SglangError, match="failed after 3 attempts") as info:
        engine.generate([[1, 2]], PARAMS)
    message = str(info.value)
    assert url in message and "rid " in message and "ConnectionError" in message
    engine.close()


def test_5xx_is_retried_then_succeeds(stub_factory):
    stub = stub_factory([(503, {"error": "busy"}), (502, {"error": "gateway"})])
    engine = SglangEngine([stub.url], weight_version="0", options=FAST)
    groups = engine.generate([[1, 2]], PARAMS, n=3)
    assert [c.token_ids for c in groups[0]] == [(7, 8)] * 3
    assert groups[0][0].logprobs == (-0.5, -1.5)
    assert len(stub.requests) == 3  # two failures, one success
    engine.close()


def test_5xx_every_time_gives_up_with_the_status(stub_factory):
    stub = stub_factory([(500, {"error": "boom"})] * 3)
    engine = SglangEngine([stub.url], weight_version="0", options=FAST)
    with pytest.raises(SglangError, match="HTTP 500") as info:
        engine.generate([[1]], PARAMS)
    assert stub.url in str(info.value)
    assert len(stub.requests) == 3
    engine.close()


def test_4xx_is_not_retried(stub_factory):
    message = "The input (600 tokens) is longer than the model's context length (512 tokens)."
    stub = stub_factory([(400, {"error": {"message": message}})])
    engine = SglangEngine([stub.url], weight_version="0", options=FAST)
    with pytest.raises(PromptTooLongError, match="context length"):
        engine.generate([[1] * 600], PARAMS)
    assert len(stub.requests) == 1
    engine.close()


def test_dropped_connection_is_retried_on_the_next_server(stub_factory):
    dropping = stub_factory([(200, "drop")] * 5)
    healthy = stub_factory([])
    engine = SglangEngine([dropping.url, healthy.url], weight_version="0", options=FAST)
    groups = engine.generate([[1], [2], [3], [4]], PARAMS)
    assert all(g[0].token_ids == (7, 8) for g in groups)
    engine.close()


def test_request_body_is_token_exact_with_logprobs(stub_factory):
    stub = stub_factory([])
    engine = SglangEngine([stub.url], weight_version="0", options=FAST)
    params = SamplingParams(temperature=0.7, top_p=0.9, top_k=5, max_new_tokens=2,
                            stop_token_ids=(3, 4))  # fmt: skip
    engine.generate([[11, 12, 13]], params, n=2)
    path, body = stub.requests[0]
    assert path == "/generate"
    assert body["input_ids"] == [11, 12, 13]
    assert body["return_logprob"] is True and body["logprob_start_len"] == -1
    assert body["sampling_params"] == {
        "temperature": 0.7, "top_p": 0.9, "top_k": 5, "max_new_tokens": 2,
        "stop_token_ids": [3, 4], "n": 2, "skip_special_tokens": False, "no_stop_trim": True,
    }  # fmt: skip
    engine.close()


def test_weight_update_failure_names_the_server(stub_factory):
    ok = stub_factory([(200, {"success": True, "message": "ok"})])
    bad = stub_factory([(400, {"success": False, "message": "shape mismatch"})])
    engine = SglangEngine([ok.url, bad.url], weight_version="0", options=FAST)
    with pytest.raises(WeightSyncError, match="shape mismatch") as info:
        engine.update_weights("/models/step_1", version=1)
    assert bad.url in str(info.value)
    assert engine.weight_version == "0"
    assert ok.requests[0] == (
        "/update_weights_from_disk",
        {"model_path": "/models/step_1", "weight_version": "1", "flush_cache": True},
    )
    engine.close()


def test_seeded_sampling_sends_one_request_per_sample_with_distinct_seeds(stub_factory):
    stub = stub_factory([])
    engine = SglangEngine([stub.url], weight_version="0", options=FAST)
    groups = engine.generate([[1], [2]], SamplingParams(max_new_tokens=2, seed=5), n=3)
    assert [len(g) for g in groups] == [3, 3]
    bodies = [body for _, body in stub.requests]
    assert len(bodies) == 6 and all(b["sampling_params"]["n"] == 1 for b in bodies)
    seeds = {b["sampling_params"]["sampling_seed"] for b in bodies}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)
    assert len({b["rid"] for b in bodies}) == 6
    # The same seed gives the same per-sample seeds next time (reproducible where the server is).
    engine.generate([[1], [2]], SamplingParams(max_new_tokens=2, seed=5), n=3)
    again = {body["sampling_params"]["sampling_seed"] for _, body in stub.requests[6:]}
    assert again == seeds
    engine.close()


def test_generate_after_close_raises(stub_factory):
    stub = stub_factory([])
    engine = SglangEngine([stub.url], weight_version="0", options=FAST)
    engine.close()
    with pytest.raises(EngineClosedError):
        engine.generate([[1]], PARAMS)
    assert stub.requests == []
