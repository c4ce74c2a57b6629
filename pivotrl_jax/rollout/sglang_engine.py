"""The SGLang rollout engine: an HTTP client to one or more SGLang servers.

    engine = SglangEngine(["http://127.0.0.1:30000"], weight_version=0)
    groups = engine.generate(prompt_ids, SamplingParams(max_new_tokens=256), n=16)  # [P][n]
    engine.update_weights("runs/export/step_7", version=7)   # every server reloads the folder
    engine.update_weights(lambda: export_hf(params, config, folder), version=8)  # export, then load
    engine.close()                                            # aborts what is still running

Requests. One `POST /generate` per prompt with its token ids (never re-tokenised text), the
sampling params with `n`, `return_logprob` and `no_stop_trim` (a stop token stays in the output).
Each reply's `meta_info.output_token_logprobs` rows [logprob, token_id, text] give the tokens and
their logprobs. As in the JAX engine, the logprob is log softmax(logits / T) of the sampled token,
with T = 1 for greedy (T = 0), before any top-k / top-p filtering.

Prompts go round robin over the servers, at most `max_concurrency` requests in flight. A
connection error or a 5xx is retried on the next server after an exponential back-off; a 4xx
(a request the server refuses, e.g. a prompt longer than the context) is not. Every error names
the server URL and the request id (`rid`).

Weights. `update_weights(folder, version)` makes every server load an HF-layout safetensors folder
(`POST /update_weights_from_disk`, cache flushed) tagged with `version`; the folder must be
readable by the servers. Each completion's weight version (and every span of it) is checked
against the version last loaded: a completion sampled by stale weights raises WeightVersionError.

Faults. Servers the engine was given to manage (`managed`, e.g. `server.ServerProcess`) are
restarted when their process has exited: the failed request's retry waits for one restart (the
first request to notice starts it; the others see it done), which loads the weights the engine
last synced under their version. A completion whose weight version is not the engine's (a server
restarted behind the engine's back, or one that missed an update) is not returned: that server
is made to load the current weights again and the request is sent again (`stats` counts
restarts and regenerated samples); only when that cannot be done does it raise
WeightVersionError.

Seeds. SGLang honours `sampling_seed` only with `--enable-deterministic-inference`, and a shared
seed would make the n samples of a prompt identical: with `SamplingParams.seed` set, each sample
is its own request with seed (seed, prompt, sample) mixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Literal, Protocol

import requests

from pivotrl_jax.errors import PivotError
from pivotrl_jax.rollout.base import FINISH_REASONS, Completion, SamplingParams

WeightSource = str | os.PathLike | Callable[[], str | os.PathLike]
CLOSED_DURING_GENERATE = "the SGLang engine was closed during generate"


class SglangError(PivotError, RuntimeError):
    """A request to an SGLang server failed; the message names the server and the request id."""

    def __init__(self, message: str, *, url: str | None = None, rid: str | None = None):
        self.url = url
        self.rid = rid
        where = ", ".join(x for x in (url and f"server {url}", rid and f"rid {rid}") if x)
        super().__init__(f"{where}: {message}" if where else message)


class PromptTooLongError(SglangError, ValueError):
    """A prompt (plus max_new_tokens) does not fit the model's context."""


class WeightVersionError(SglangError):
    """A completion was sampled by other weights than the ones last loaded."""


class WeightSyncError(SglangError):
    """A server did not load the new weights."""


class EngineClosedError(SglangError):
    """The engine was closed (requests in flight were aborted)."""


@dataclasses.dataclass(frozen=True)
class SglangEngineOptions:
    """How the engine talks to its servers.

    max_concurrency: HTTP requests in flight at once, over all servers (one per prompt, or per
      sample when seeded).
    max_restarts: restarts of one managed server before its failures are final.
    request_timeout_s: longest wait for one reply (a whole completion group).
    retries: further attempts after a connection error or 5xx, each on the next server, after
      backoff_s * 2**attempt seconds.
    context_length: the model's context; when set, prompts are checked here before sending.
      None leaves it to the server (which refuses with a 400, raised as PromptTooLongError).
    truncation: "error" raises PromptTooLongError; "left" drops a prompt's oldest tokens so
      prompt + max_new_tokens fits (needs context_length).
    """

    max_concurrency: int = 32
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 3600.0
    retries: int = 3
    backoff_s: float = 0.5
    update_timeout_s: float = 1800.0
    context_length: int | None = None
    truncation: Literal["error", "left"] = "error"
    max_restarts: int = 5  # per managed server, over the engine's life

    def __post_init__(self) -> None:
        if self.truncation not in ("error", "left"):
            raise ValueError(f"truncation must be 'error' or 'left', got {self.truncation!r}")
        if self.truncation == "left" and self.context_length is None:
            raise ValueError("truncation='left' needs context_length")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")


@dataclasses.dataclass(frozen=True)
class _Job:
    """One HTTP request: samples first..first+n-1 of prompt `prompt_index`."""

    prompt_index: int
    first_sample: int
    n: int
    seed: int | None


class _Retryable(Exception):
    """A failure worth trying again on another server."""


class ManagedServer(Protocol):
    """A server process the engine may restart (`server.ServerProcess` is one)."""

    url: str

    def alive(self) -> bool: ...

    def restart(self, model_path: str | None = None, weight_version: str | None = None) -> None: ...


class SglangEngine:
    """RolloutEngine over SGLang servers (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        weight_version: str | int | None = None,
        options: SglangEngineOptions | None = None,
        managed: Sequence[ManagedServer] = (),
    ):
        """urls: the servers (`http://host:port`). weight_version: the version of the weights
        they serve now; None reads it from the first server (`GET /model_info`). managed: those
        of the servers the engine may restart (see the module docstring)."""
        if not urls:
            raise ValueError("SglangEngine needs at least one server URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.options = options or SglangEngineOptions()
        self._managed = {m.url.rstrip("/"): m for m in managed}
        self._generation = dict.fromkeys(self.urls, 0)  # restarts so far, per server
        self._server_locks = {u: threading.Lock() for u in self.urls}
        self._weights_folder: str | None = None  # None: the servers' own start-up weights
        self.stats: Counter = Counter()  # restarts, regenerated samples
        self._sessions = threading.local()
        self._next_server = itertools.count()
        self._pool = ThreadPoolExecutor(self.options.max_concurrency, "sglang-rollout")
        self._call_lock = threading.Lock()  # generate and update_weights take turns
        self._in_flight: dict[str, str] = {}  # rid -> url
        self._in_flight_lock = threading.Lock()
        self._closed = threading.Event()
        self.last_refit_s: float | None = None
        self._server_input_limit: int | None = None
        self.weight_version = (
            weight_version if weight_version is not None else self._server_weight_version()
        )

    # -- generate ------------------------------------------------------------------------------

    def generate(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams, n: int = 1
    ) -> list[list[Completion]]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        prompts = [self._fit(i, p, params.max_new_tokens) for i, p in enumerate(prompt_ids)]
        if not prompts:
            return []
        jobs = _jobs(len(prompts), n, params.seed, params.prompt_offset)
        with self._call_lock:
            self._check_open()
            batch = uuid.uuid4().hex[:12]
            futures: dict[Future, _Job] = {}
            for job in jobs:
                rid = f"{batch}-p{job.prompt_index}-s{job.first_sample}"
                try:
                    future = self._pool.submit(
                        self._run_job, rid, prompts[job.prompt_index], params, job
                    )
                except RuntimeError:  # the pool was shut down by a concurrent close()
                    raise EngineClosedError(CLOSED_DURING_GENERATE) from None
                futures[future] = job
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.cancelled() for f in done):
                raise EngineClosedError(CLOSED_DURING_GENERATE)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                for f in pending:
                    f.cancel()
                self._abort_in_flight()
                wait(pending)
                raise failed[0].exception()
            results: dict[tuple[int, int], Completion] = {}
            for future, job in futures.items():
                for k, completion in enumerate(future.result()):
                    results[job.prompt_index, job.first_sample + k] = completion
        return [[results[i, j] for j in range(n)] for i in range(len(prompts))]

    def _fit(self, index: int, prompt: Sequence[int], max_new_tokens: int) -> list[int]:
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError(f"prompt {index} is empty")
        context = self.options.context_length
        if context is None:
            return ids
        keep = self._max_prompt_len(context - max_new_tokens)
        if len(ids) <= keep:
            return ids
        if self.options.truncation == "left" and keep > 0:
            return ids[-keep:]
        raise PromptTooLongError(
            f"prompt {index} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} at most "
            f"{keep} fit (context_length={context}, and what the servers accept) "
            f"(SglangEngineOptions(truncation='left') drops the oldest tokens instead)"
        )

    def _max_prompt_len(self, budget: int) -> int:
        """min(budget, what every server accepts): SGLang refuses a prompt of
        `max_req_input_len` (its /server_info; about context - 6) tokens or more."""
        if self._server_input_limit is None:
            limits = []
            for url in self.urls:
                with contextlib.suppress(requests.RequestException, KeyError, ValueError):
                    info = self._session().get(
                        f"{url}/server_info", timeout=self.options.connect_timeout_s
                    )
                    limits.append(int(info.json()["max_req_input_len"]) - 1)
            self._server_input_limit = min(limits, default=budget)
        return min(budget, self._server_input_limit)

    def _run_job(
        self, rid: str, prompt: list[int], params: SamplingParams, job: _Job
    ) -> list[Completion]:
        sampling = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "max_new_tokens": params.max_new_tokens,
            "stop_token_ids": list(params.stop_token_ids),
            "n": job.n,
            "skip_special_tokens": False,
            "no_stop_trim": True,
        }
        if job.seed is not None:
            sampling["sampling_seed"] = job.seed
        body = {
            "input_ids": prompt,
            "rid": rid,
            "return_logprob": True,
            "logprob_start_len": -1,
            "sampling_params": sampling,
        }
        for attempt in range(self.options.retries + 1):
            url, reply = self._post_with_retries(
                "/generate", body, rid=rid, timeout_s=self.options.request_timeout_s
            )
            items = reply if isinstance(reply, list) else [reply]
            if len(items) != job.n:
                raise SglangError(f"asked for {job.n} samples, got {len(items)}", url=url, rid=rid)
            try:
                return [self._completion(item, url, rid) for item in items]
            except WeightVersionError:
                if attempt == self.options.retries or not self._resync(url):
                    raise
            self.stats["regenerated_samples"] += job.n
            body = {**body, "rid": f"{rid}-r{attempt + 1}"}
        raise AssertionError("unreachable")

    def _completion(self, item: dict[str, Any], url: str, rid: str) -> Completion:
        meta = item["meta_info"]
        rows = meta["output_token_logprobs"]
        token_ids = [int(row[1]) for row in rows]
        if "output_ids" in item and list(item["output_ids"]) != token_ids:
            raise SglangError("output_ids disagree with output_token_logprobs", url=url, rid=rid)
        finish = (meta.get("finish_reason") or {}).get("type")
        if finish not in FINISH_REASONS:
            raise SglangError(f"unexpected finish_reason {meta.get('finish_reason')!r}", url=url,
                              rid=rid)  # fmt: skip
        expected = str(self.weight_version)
        versions = {str(meta.get("weight_version"))}
        versions |= {str(span["version"]) for span in meta.get("weight_versions") or ()}
        if versions != {expected}:
            raise WeightVersionError(
                f"completion sampled with weight version(s) {sorted(versions)}, expected "
                f"{expected!r} (a server missed a weight update?)",
                url=url,
                rid=rid,
            )
        return Completion(
            token_ids=token_ids,
            logprobs=[float(row[0]) for row in rows],
            finish_reason=finish,
            weight_version=self.weight_version,
        )

    # -- HTTP ----------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
        return session

    def _post_with_retries(
        self, path: str, body: dict[str, Any], *, rid: str, timeout_s: float,
        url: str | None = None,
    ) -> tuple[str, Any]:  # fmt: skip
        """POSTs to `url` (or the next servers in turn); returns (url, JSON reply)."""
        errors = []
        first = next(self._next_server)  # round robin; a retry moves on to the next server
        for attempt in range(self.options.retries + 1):
            self._check_open()
            target = url or self.urls[(first + attempt) % len(self.urls)]
            generation = self._generation[target]
            try:
                return target, self._post(target, path, body, rid=rid, timeout_s=timeout_s)
            except _Retryable as e:
                errors.append(f"{target}: {e}")
                if attempt < self.options.retries and not self._restart_if_dead(target, generation):
                    time.sleep(self.options.backoff_s * 2**attempt)
        raise SglangError(
            f"{path} failed after {self.options.retries + 1} attempts: " + "; ".join(errors),
            url=url or ",".join(self.urls),
            rid=rid,
        )

    def _post(self, url: str, path: str, body: dict[str, Any], *, rid: str,
              timeout_s: float) -> Any:  # fmt: skip
        with self._in_flight_lock:
            self._in_flight[rid] = url
        try:
            reply = self._session().post(
                f"{url}{path}", json=body, timeout=(self.options.connect_timeout_s, timeout_s)
            )
        except requests.exceptions.ReadTimeout:
            self._abort(url, {"rid": rid})
            raise SglangError(f"no reply within {timeout_s:.0f} s (aborted)", url=url,
                              rid=rid) from None  # fmt: skip
        except requests.exceptions.RequestException as e:
            raise _Retryable(f"{type(e).__name__}: {e}") from e
        finally:
            with self._in_flight_lock:
                self._in_flight.pop(rid, None)
        if reply.status_code >= 500:
            raise _Retryable(f"HTTP {reply.status_code}: {reply.text[:500]}")
        if reply.status_code >= 400:
            message = _error_message(reply)
            too_long = "context length" in message or "maximum allowed length" in message
            kind = PromptTooLongError if too_long else SglangError
            raise kind(f"{path} refused (HTTP {reply.status_code}): {message}", url=url, rid=rid)
        try:
            return reply.json()
        except ValueError:
            raise SglangError(f"{path} replied with non-JSON: {reply.text[:200]!r}", url=url,
                              rid=rid) from None  # fmt: skip

    def _abort(self, url: str, body: dict[str, Any]) -> None:
        # A server that does not answer runs nothing of ours any more.
        with contextlib.suppress(requests.RequestException):
            self._session().post(
                f"{url}/abort_request", json=body, timeout=self.options.connect_timeout_s
            )

    def _abort_in_flight(self) -> None:
        """Aborts this engine's requests still running: by rid, then everything on their
        servers, since SGLang gives the n > 1 samples of a request internal ids of their own."""
        with self._in_flight_lock:
            in_flight = dict(self._in_flight)
        for rid, url in in_flight.items():
            self._abort(url, {"rid": rid})
        for url in sorted(set(in_flight.values())):
            self._abort(url, {"abort_all": True})

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise EngineClosedError("the SGLang engine is closed")

    # -- faults --------------------------------------------------------------------------------

    def _restart_if_dead(self, url: str, generation: int) -> bool:
        """After a failed request to `url` (sent at restart `generation`): restart the server if
        it is managed and its process has exited. True when it has been restarted since the
        request was sent (by this call or another), so a retry may go to it at once."""
        server = self._managed.get(url)
        if server is None:
            return False
        with self._server_locks[url]:
            if self._generation[url] != generation:
                return True
            if server.alive() or self._closed.is_set():
                return False
            if self._generation[url] >= self.options.max_restarts:
                return False
            folder = self._weights_folder
            server.restart(model_path=folder, weight_version=str(self.weight_version))
            self._generation[url] += 1
            self.stats["restarts"] += 1
            return True

    def _resync(self, url: str) -> bool:
        """Make `url` serve the engine's current weights again (it answered with another
        version). False when the engine cannot: its servers still hold their start-up weights
        and this one is not managed."""
        with self._server_locks[url]:
            if self._server_weight_version(url) == str(self.weight_version):
                return True  # another request already resynced it
            folder = self._weights_folder
            if folder is None:
                server = self._managed.get(url)
                if server is None:
                    return False
                server.restart(weight_version=str(self.weight_version))
                self._generation[url] += 1
                self.stats["restarts"] += 1
                return True
            body = {
                "model_path": folder,
                "weight_version": str(self.weight_version),
                "flush_cache": True,
            }
            _, reply = self._post_with_retries(
                "/update_weights_from_disk", body, rid=f"resync-{self.weight_version}",
                timeout_s=self.options.update_timeout_s, url=url,
            )  # fmt: skip
            return bool(reply.get("success"))

    # -- weights -------------------------------------------------------------------------------

    def _server_weight_version(self, url: str | None = None) -> str:
        url = url or self.urls[0]
        try:
            reply = self._session().get(f"{url}/model_info", timeout=self.options.connect_timeout_s)
            reply.raise_for_status()
            return str(reply.json()["weight_version"])
        except (requests.RequestException, KeyError, ValueError) as e:
            raise SglangError(f"cannot read the weight version: {e}", url=url) from e

    def update_weights(self, source: WeightSource, version: str | int) -> None:
        """Every server loads the HF folder `source` (or the one `source()` writes and returns),
        tagged `version`. Records the wall time in `last_refit_s`. On failure the expected version
        stays the old one, so completions of a server that did update fail the version check."""
        with self._call_lock:
            self._check_open()
            start = time.perf_counter()
            folder = os.fspath(source() if callable(source) else source)
            body = {"model_path": folder, "weight_version": str(version), "flush_cache": True}
            # A server restarted while this runs starts on the new weights.
            previous = (self._weights_folder, self.weight_version)
            self._weights_folder, self.weight_version = folder, version
            futures = {
                url: self._pool.submit(
                    self._post_with_retries, "/update_weights_from_disk", body,
                    rid=f"update-{version}-{k}", timeout_s=self.options.update_timeout_s, url=url,
                )
                for k, url in enumerate(self.urls)
            }  # fmt: skip
            failures = []
            for url, future in futures.items():
                try:
                    _, reply = future.result()
                except SglangError as e:
                    failures.append(str(e))
                    continue
                if not reply.get("success"):
                    failures.append(f"server {url}: {reply.get('message')}")
            if failures:
                self._weights_folder, self.weight_version = previous
                raise WeightSyncError(
                    f"loading {folder} as version {version!r} failed: " + "; ".join(failures)
                )
            self.last_refit_s = time.perf_counter() - start

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Aborts requests still in flight (they return finish_reason "abort"); later calls
        raise EngineClosedError. Does not stop the servers (see server.py)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._abort_in_flight()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SglangEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jobs(num_prompts: int, n: int, seed: int | None, offset: int = 0) -> list[_Job]:
    """One job per prompt with all n samples; per sample when seeded (distinct seeds, by the
    prompt's index in the whole batch)."""
    if seed is None:
        return [_Job(i, 0, n, None) for i in range(num_prompts)]
    return [
        _Job(i, j, 1, _mix_seed(seed, offset + i, j)) for i in range(num_prompts) for j in range(n)
    ]


def _mix_seed(seed: int, prompt: int, sample: int) -> int:
    """A 63-bit seed for (seed, prompt, sample) (splitmix64 finaliser over the packed triple)."""
    x = (seed * 0x9E3779B97F4A7C15 + prompt * 0xBF58476D1CE4E5B9 + sample) & (2**64 - 1)
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x >> 1


def _error_message(reply: requests.Response) -> str:
    try:
        data = reply.json()
    except ValueError:
        return reply.text[:500]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(data.get("message", data) if isinstance(data, dict) else data)[:500]
