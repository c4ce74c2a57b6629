"""The `judge` verifier against a real HTTP server on 127.0.0.1 that answers fixed verdicts,
garbage, errors and slow replies depending on a marker in the candidate action."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pivotrl_jax.rewards import VerifyState, build_verifier, parse_action, run_verifier
from pivotrl_jax.rewards.judge import parse_verdict

S = VerifyState(
    messages=({"role": "user", "content": "list the files"},),
    tools=({"type": "function", "function": {"name": "sh", "parameters": {}}},),
)
EXPECTED = parse_action({"type": "function_call", "name": "sh", "arguments": '{"cmd": "ls"}'})


def candidate(marker):
    return parse_action({"type": "function_call", "name": "sh", "arguments": {"cmd": marker}})


class JudgeServer:
    """Answers by the marker in action B (or A, for the swapped question)."""

    def __init__(self):
        self.requests = []
        self.fail_once_seen = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                user = body["messages"][1]["content"]
                a = user.split("Action A:\n")[1].split("\n\nAction B:")[0]
                b = user.split("Action B:\n")[1]
                status, text = outer.answer(a, b)
                if status == "sleep":
                    time.sleep(3)
                    status = 200
                payload = (
                    text
                    if isinstance(text, bytes)
                    else json.dumps(
                        {"choices": [{"message": {"role": "assistant", "content": text}}]}
                    ).encode()
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def answer(self, a, b):
        if "EQUAL" in b:
            return 200, "Both list the directory. [[A=B]]"
        if "THINKS" in b:
            return 200, "<think>maybe [[A!=B]]</think>On reflection [[A!=B]] no: [[A=B]]"
        if "DIFFERENT" in b:
            return 200, "B deletes files. [[A!=B]]"
        if "ONEWAY" in b:  # equal one way round only
            return 200, "[[A=B]]"
        if "ONEWAY" in a:
            return 200, "[[A!=B]]"
        if "GARBAGE" in b:
            return 200, "I think they are kind of similar?"
        if "NOTJSON" in b:
            return 200, b"<html>oops</html>"
        if "E500ONCE" in b and b not in self.fail_once_seen:
            self.fail_once_seen.add(b)
            return 500, b"{}"
        if "E500" in b and "ONCE" not in b:
            return 500, b"{}"
        if "E400" in b:
            return 400, b"{}"
        if "SLOW" in b:
            return "sleep", "[[A=B]]"
        return 200, "[[A=B]]"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = JudgeServer()
    yield s
    s.close()


def judge(server, **params):
    params = {"base_url": server.url, "backoff_s": 0.01, "timeout_s": 5.0, **params}
    return build_verifier("judge", **params)


@pytest.mark.parametrize(
    "marker, reward, reason, decisive",
    [
        ("EQUAL", 1.0, "judge_equal", True),
        ("DIFFERENT", 0.0, "judge_different", True),
        ("THINKS", 1.0, "judge_equal", True),
        ("GARBAGE", 0.0, "judge_unparseable", False),
        ("NOTJSON", 0.0, "judge_unparseable", False),
        ("E500ONCE", 1.0, "judge_equal", True),
        ("E500", 0.0, "judge_unavailable", False),
        ("E400", 0.0, "judge_unavailable", False),
    ],
)
def test_verdicts(server, marker, reward, reason, decisive):
    got = judge(server).verify(S, EXPECTED, candidate(marker))
    assert (got.reward, got.reason, got.decisive) == (reward, reason, decisive)
    n_requests = {"E500ONCE": 2, "E500": 3}.get(marker, 1)  # max_retries=2 -> 3 attempts
    assert len(server.requests) == n_requests
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_request_carries_rubric_context_and_both_actions(server):
    judge(server, model="judge-model").verify(S, EXPECTED, candidate("EQUAL"))
    body = server.requests[0]["body"]
    assert body["model"] == "judge-model"
    assert body["temperature"] == 0.0
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert "[[A=B]]" in system and "[[A!=B]]" in system
    assert "[user] list the files" in user
    assert "Tools offered: sh" in user
    assert '{"arguments":{"cmd":"ls"},"name":"sh"}' in user


def test_swapped_recheck(server):
    one_way = candidate("ONEWAY")
    assert judge(server).verify(S, EXPECTED, one_way).reward == 1.0
    got = judge(server, check_swapped=True).verify(S, EXPECTED, one_way)
    assert (got.reward, got.reason) == (0.0, "judge_inconsistent")
    got = judge(server, check_swapped=True).verify(S, EXPECTED, candidate("EQUAL"))
    assert got.reward == 1.0  # "EQUAL" is in A on the swapped question: default [[A=B]]


def test_timeout_and_retries(server):
    start = time.monotonic()
    got = judge(server, timeout_s=0.3, max_retries=1).verify(S, EXPECTED, candidate("SLOW"))
    assert (got.reward, got.reason) == (0.0, "judge_unavailable")
    assert "2 attempts" in got.info["error"]
    assert time.monotonic() - start < 2.5


def test_exponential_backoff(server):
    start = time.monotonic()
    got = judge(server, backoff_s=0.1, max_retries=2).verify(S, EXPECTED, candidate("E500"))
    assert got.reason == "judge_unavailable"
    assert time.monotonic() - start >= 0.1 + 0.2


def test_runner_time_limit_cuts_a_slow_judge(server):
    v = judge(server, timeout_s=30.0)
    start = time.monotonic()
    got = run_verifier(v, S, EXPECTED, candidate("SLOW"), time_limit_s=0.3, name="judge")
    assert got.reason == "timeout"
    assert time.monotonic() - start < 2.0


def test_connection_refused():
    v = build_verifier("judge", base_url="http://127.0.0.1:9", max_retries=1, backoff_s=0.01)
    got = v.verify(S, EXPECTED, candidate("EQUAL"))
    assert (got.reward, got.reason, got.decisive) == (0.0, "judge_unavailable", False)


def test_cache_in_memory_and_on_disk(server, tmp_path):
    path = tmp_path / "verdicts.jsonl"
    v = judge(server, cache_path=str(path))
    for _ in range(3):
        assert v.verify(S, EXPECTED, candidate("EQUAL")).reward == 1.0
    assert v.verify(S, EXPECTED, candidate("DIFFERENT")).reward == 0.0
    assert len(server.requests) == 2
    assert v.cache.hits == 2
    # unparseable answers are not cached: asked again
    v.verify(S, EXPECTED, candidate("GARBAGE"))
    v.verify(S, EXPECTED, candidate("GARBAGE"))
    assert len(server.requests) == 4
    # a new verifier on the same file answers from disk
    fresh = judge(server, cache_path=str(path))
    assert fresh.verify(S, EXPECTED, candidate("DIFFERENT")).reason == "judge_different"
    assert len(server.requests) == 4
    assert len(path.read_text().splitlines()) == 2


def test_lru_evicts_oldest(server):
    v = judge(server, cache_size=1)
    v.verify(S, EXPECTED, candidate("EQUAL"))
    v.verify(S, EXPECTED, candidate("DIFFERENT"))
    v.verify(S, EXPECTED, candidate("EQUAL"))
    assert len(server.requests) == 3
    assert len(v.cache) == 1


def test_api_key_only_from_env_and_never_exposed(server, monkeypatch, caplog):
    secret = "sk-test-very-secret-123"
    caplog.set_level(logging.DEBUG)
    v = judge(server, api_key_env="PIVOTRL_TEST_JUDGE_KEY")
    monkeypatch.delenv("PIVOTRL_TEST_JUDGE_KEY", raising=False)
    v.verify(S, EXPECTED, candidate("EQUAL"))
    assert "Authorization" not in server.requests[-1]["headers"]
    monkeypatch.setenv("PIVOTRL_TEST_JUDGE_KEY", secret)
    for marker in ("DIFFERENT", "E500", "E400"):
        got = run_verifier(v, S, EXPECTED, candidate(marker), name="judge")
        assert secret not in json.dumps(got.info) and secret not in repr(got)
    assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {secret}"
    assert secret not in caplog.text
    assert secret not in repr(v)


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("[[A=B]]", "equal"),
        ("[[A!=B]]", "different"),
        ("first [[A=B]] then [[A!=B]]", "different"),
        ("<think>[[A=B]]</think>", None),
        ("A=B", None),
        ("", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict
