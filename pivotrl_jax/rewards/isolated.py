"""`isolated`: another verifier run in a worker process that is killed at its time limit.

In-process time limits (`runner.call_with_limit`) raise inside the verifier, so a verifier that
catches `BaseException` in a loop, or blocks in C code that ignores signals, cannot be stopped
there. Wrapped as `isolated`, it runs in a child process (started with `spawn`, so nothing of the
trainer's threads or accelerator state is inherited); when no answer comes within `time_limit_s`
the child is killed (SIGKILL) and a new one is started at the next call. The reward is then 0
with reason `timeout`, not decisive, as for an in-process time-out.

Requests and answers cross the pipe as JSON (the state, both actions in `Action.to_json` form,
the result), never pickled objects. The child imports `modules` first (the environments'
verifiers by default; add the module that registers a custom verifier), then builds
`build_verifier(verifier, **params)` once.

    verifiers.terminal = {"name": "isolated",
                          "params": {"verifier": "env_acceptable",
                                     "params": {"domain": "terminal"}, "time_limit_s": 5}}
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import threading
from dataclasses import dataclass, field
from typing import Any

from pivotrl_jax.rewards.actions import Action, parse_action
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, build_verifier, result

DEFAULT_MODULES = ("pivotrl_jax.rewards", "pivotrl_jax.envs")


def _serve(conn: Any, modules: list[str], name: str, params: dict[str, Any]) -> None:
    """The worker: build the verifier, then answer one JSON request per message until EOF."""
    for m in modules:
        importlib.import_module(m)
    verifier = build_verifier(name, **params)
    while True:
        try:
            req = json.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            state = VerifyState(
                messages=tuple(req["state"]["messages"]),
                tools=tuple(req["state"]["tools"]),
                env=req["state"]["env"],
            )
            res = verifier.verify(state, parse_action(req["expected"]), parse_action(req["action"]))
            out = {"reward": res.reward, "info": res.info, "decisive": res.decisive}
        except Exception as e:  # reported to the caller as the verifier's error
            out = {"error": type(e).__name__, "message": str(e)[:500]}
        conn.send_bytes(json.dumps(out, default=str).encode())


class _Worker:
    """One child process and its end of the pipe; restarted after a kill."""

    def __init__(self, modules: tuple[str, ...], name: str, params: dict[str, Any]):
        self.args = (list(modules), name, params)
        self.proc: Any = None
        self.conn: Any = None
        self.lock = threading.Lock()

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, *self.args), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.conn.close()
        self.proc = self.conn = None

    def call(self, request: bytes, seconds: float) -> dict[str, Any] | None:
        """The answer, or None when none came within `seconds` (the child is then killed)."""
        with self.lock:
            if self.proc is None or not self.proc.is_alive():
                self.kill()
                self.start()
            done = False
            try:
                self.conn.send_bytes(request)
                if self.conn.poll(seconds):
                    answer = json.loads(self.conn.recv_bytes())
                    done = True
                    return answer
                return None
            except (EOFError, OSError):  # the child died (killed, out of memory, os._exit)
                return {"error": "WorkerDied", "message": "the verifier's process exited"}
            finally:
                if not done:  # timed out, died, or an enclosing limit fired: never reuse it
                    self.kill()


@VERIFIERS.register("isolated")
@dataclass(frozen=True)
class IsolatedVerifier:
    verifier: str = "exact"
    params: dict[str, Any] = field(default_factory=dict)
    time_limit_s: float = 10.0
    modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.time_limit_s <= 0:
            raise ValueError(f"isolated: time_limit_s must be > 0, got {self.time_limit_s}")
        for m in self.modules:
            importlib.import_module(m)  # an unknown module is a config error here, not per call
        build_verifier(self.verifier, **self.params)  # the same check in this process
        modules = tuple(dict.fromkeys((*DEFAULT_MODULES, *self.modules)))
        object.__setattr__(self, "_worker", _Worker(modules, self.verifier, dict(self.params)))

    def close(self) -> None:
        self._worker.kill()

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        request = json.dumps(
            {
                "state": {"messages": state.messages, "tools": state.tools, "env": state.env},
                "expected": expected.to_json(),
                "action": action.to_json(),
            }
        ).encode()
        answer = self._worker.call(request, self.time_limit_s)
        if answer is None:
            return result(0.0, "timeout", decisive=False, time_limit_s=self.time_limit_s)
        if "error" in answer:
            return result(
                0.0, f"error:{answer['error']}", decisive=False, error=answer.get("message", "")
            )
        return VerifyResult(float(answer["reward"]), answer["info"], bool(answer["decisive"]))
