"""SglangEngine's fault handling against a stand-in server process (seconds; `make test`).

The stand-in speaks the three endpoints the engine uses (/generate answering with the weight
version it holds, /update_weights_from_disk, /model_info) and can be killed (its port then
refuses connections) and restarted on the same port, as `server.ServerProcess` is. The real
CPU SGLang server under the same faults is `sglang_loop_test.py` (`make reliability`).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rollout"))
from sglang_faults_test import FAST, PARAMS, reply_for, send_json

from pivotrl_jax.rollout.server import free_port
from pivotrl_jax.rollout.sglang_engine import SglangEngine, SglangError, WeightVersionError


class StandInServer:
    """A managed server (`sglang_engine.ManagedServer`): `version` is the weight version it
    serves, `loads` the (folder, version) pairs it was told to load, `restarts` its restarts."""

    def __init__(self):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.version = "0"
        self.loads: list[tuple[str, str]] = []
        self.restarts: list[tuple[str | None, str | None]] = []
        self.httpd: ThreadingHTTPServer | None = None
        self._start()

    def _start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                send_json(self, 200, {"weight_version": server.version})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/update_weights_from_disk":
                    server.loads.append((body["model_path"], body["weight_version"]))
                    server.version = body["weight_version"]
                    send_json(self, 200, {"success": True, "message": "ok"})
                else:
                    send_json(self, 200, reply_for(body, server.version))

            def log_message(self, *args):
                pass

        port = int(self.url.rsplit(":", 1)[1])
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def alive(self) -> bool:
        return self.httpd is not None

    def kill(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def restart(self, model_path: str | None = None, weight_version: str | None = None) -> None:
        self.kill()
        self.restarts.append((model_path, weight_version))
        self.version = weight_version or "0"
        self._start()


@pytest.fixture
def server():
    s = StandInServer()
    yield s
    s.kill()


def test_a_dead_managed_server_is_restarted_on_the_synced_weights(server):
    engine = SglangEngine([server.url], weight_version="0", options=FAST, managed=[server])
    engine.update_weights("/runs/weights/v1", 1)
    server.kill()
    groups = engine.generate([[1, 2], [3]], PARAMS, n=2)
    assert server.restarts == [("/runs/weights/v1", "1")]  # once, however many requests failed
    assert engine.stats["restarts"] == 1
    assert [[c.token_ids for c in g] for g in groups] == [[(7, 8)] * 2] * 2
    assert {str(c.weight_version) for g in groups for c in g} == {"1"}
    engine.close()


def test_samples_of_a_wrong_version_are_regenerated_after_a_resync(server):
    engine = SglangEngine([server.url], weight_version="0", options=FAST, managed=[server])
    engine.update_weights("/runs/weights/v1", 1)
    server.version = "7"  # weights loaded behind the engine's back
    groups = engine.generate([[1, 2]], PARAMS, n=3)
    assert server.loads[-1] == ("/runs/weights/v1", "1")  # made to load the current weights
    assert engine.stats["regenerated_samples"] == 3
    assert {str(c.weight_version) for c in groups[0]} == {"1"}
    assert server.restarts == []
    engine.close()


def test_an_unmanaged_server_on_its_start_up_weights_cannot_be_resynced(server):
    engine = SglangEngine([server.url], weight_version="0", options=FAST)
    server.version = "7"
    with pytest.raises(WeightVersionError, match="expected '0'"):
        engine.generate([[1]], PARAMS)
    server.kill()
    with pytest.raises(SglangError, match="failed after 3 attempts"):
        engine.generate([[1]], PARAMS)  # not managed: never restarted
    assert server.restarts == [] and engine.stats["restarts"] == 0
    engine.close()
