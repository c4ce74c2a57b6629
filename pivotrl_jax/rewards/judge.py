"""`judge`: an LLM decides whether the candidate does what the demonstrated action does.

The question goes to any OpenAI-compatible chat endpoint (`POST {base_url}/v1/chat/completions`;
by default a local SGLang server). The prompt gives the rubric, the last `context_messages`
messages of the state, the offered tool names, the demonstrated action as A and the candidate
as B; the answer must end in `[[A=B]]` (equivalent) or `[[A!=B]]` (the last such token counts,
reasoning in `<think>` is ignored).

- reward 1: the judge says `[[A=B]]` (and, with `check_swapped`, also when asked with A and B
  swapped; a disagreement scores 0, reason `judge_inconsistent`);
- reward 0, decisive: `[[A!=B]]`;
- reward 0, not decisive (a chain asks its next step): no verdict token (`judge_unparseable`) or
  no answer after the retries (`judge_unavailable`).

Requests that fail with a connection error, a time-out, HTTP 429 or 5xx are retried up to
`max_retries` times after `backoff_s · 2^attempt` seconds. Verdicts are cached by request
(`judge_cache.VerdictCache`; `cache_path` keeps them across runs). The API key is read from the
environment variable named by `api_key_env` at request time and sent only as the bearer header: it
is never logged, cached or put in a result.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from pivotrl_jax.rewards.actions import Action, render_action, strip_reasoning
from pivotrl_jax.rewards.base import VERIFIERS, VerifyResult, VerifyState, result
from pivotrl_jax.rewards.judge_cache import VerdictCache, request_key

EQUAL, DIFFERENT = "[[A=B]]", "[[A!=B]]"
_VERDICT = re.compile(r"\[\[A(!?)=B\]\]")

RUBRIC = (
    "You grade an AI agent. At one point of a conversation a reference agent took action A; a "
    "candidate took action B. Decide whether B is functionally equivalent to A at this point: "
    "the same tool(s) called with arguments that would give the same result, or a message with "
    "the same substance and intent. Wording, argument order and formatting do not matter; a "
    "different tool, a different target or value, or a missing step does. Think briefly, then end "
    f"your answer with exactly one verdict: {EQUAL} if equivalent, {DIFFERENT} if not."
)


_TRANSIENT = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


class JudgeUnavailable(Exception):
    """No usable HTTP answer after the retries."""


def parse_verdict(text: str) -> str | None:
    """ "equal", "different", or None when the text has no verdict token (the last one counts)."""
    found = _VERDICT.findall(strip_reasoning(text))
    if not found:
        return None
    return "different" if found[-1] == "!" else "equal"


def _render_context(messages: tuple[dict[str, Any], ...], limit: int) -> str:
    lines = []
    for m in messages[-limit:] if limit > 0 else ():
        content = m.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False)
        if m.get("tool_calls"):
            content += "\n" + json.dumps(m["tool_calls"], ensure_ascii=False)
        lines.append(f"[{m.get('role', '?')}] {content[:2000]}")
    return "\n".join(lines) or "(none)"


def judge_messages(
    state: VerifyState, a: Action, b: Action, rubric: str, context_messages: int
) -> list[dict[str, str]]:
    tools = [(t.get("function") or t).get("name", "?") for t in state.tools if isinstance(t, dict)]
    context = _render_context(state.messages, context_messages)
    user = (
        f"Conversation so far (most recent last):\n{context}"
        f"\n\nTools offered: {', '.join(map(str, tools)) or '(none)'}"
        f"\n\nAction A:\n{render_action(a, canonical=True)}"
        f"\n\nAction B:\n{render_action(b, canonical=True)}"
    )
    return [{"role": "system", "content": rubric}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class JudgeVerifier:
    base_url: str = "http://127.0.0.1:30000"
    model: str = "default"
    api_key_env: str = "PIVOTRL_JUDGE_API_KEY"
    timeout_s: float = 30.0
    max_retries: int = 2
    backoff_s: float = 0.5
    check_swapped: bool = False
    max_tokens: int = 1024
    temperature: float = 0.0
    context_messages: int = 6
    rubric: str = RUBRIC
    cache_size: int = 4096
    cache_path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache", VerdictCache(self.cache_size, self.cache_path))

    def verify(self, state: VerifyState, expected: Action, action: Action) -> VerifyResult:
        if expected.error is not None:
            raise ValueError(f"expected action is invalid: {expected.error}")
        if action.error is not None:
            return result(0.0, f"invalid_action:{action.error}")
        try:
            first = self.ask(state, expected, action)
            if first != "equal" or not self.check_swapped:
                second = None
            else:
                second = self.ask(state, action, expected)
        except JudgeUnavailable as e:
            return result(0.0, "judge_unavailable", decisive=False, error=str(e))
        if first is None or (self.check_swapped and first == "equal" and second is None):
            return result(0.0, "judge_unparseable", decisive=False)
        if first == "different":
            return result(0.0, "judge_different")
        if second == "different":
            return result(0.0, "judge_inconsistent")
        return result(1.0, "judge_equal")

    def ask(self, state: VerifyState, a: Action, b: Action) -> str | None:
        """The judge's verdict on (A, B), from the cache or the endpoint."""
        body = {
            "model": self.model,
            "messages": judge_messages(state, a, b, self.rubric, self.context_messages),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        key = request_key(body)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        verdict = parse_verdict(self._complete(body))
        if verdict is not None:
            self.cache.put(key, verdict)
        return verdict

    def _complete(self, body: dict[str, Any]) -> str:
        """The assistant text of one chat completion, with retries."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        url = self.base_url.rstrip("/") + "/v1/chat/completions"
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = response.read()
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code == 429 or e.code >= 500:
                    continue
                raise JudgeUnavailable(last) from None
            except _TRANSIENT as e:
                last = type(getattr(e, "reason", e)).__name__
                continue
            return _completion_text(payload)
        raise JudgeUnavailable(f"{last} after {self.max_retries + 1} attempts")


def _completion_text(payload: bytes) -> str:
    """choices[0].message.content of a chat completion; "" when the body is not one."""
    try:
        content = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


VERIFIERS.register("judge", JudgeVerifier)
