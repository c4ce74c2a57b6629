"""Shared pieces of the sglang test tier: the CPU env check, tiny random models, a transformers
reference for logprobs, and a CPU server launcher.

The tier needs `.venv-sglang` (built by launch/sglang_cpu_env.sh). Without it the tests fail
with that instruction, unless PIVOTRL_SKIP_SGLANG=1 is set, which skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pivotrl_jax.rollout.base import Completion
from pivotrl_jax.rollout.server import ServerConfig, ServerProcess, launch

REPO = Path(__file__).resolve().parents[2]
SGLANG_PYTHON = Path(os.environ.get("PIVOTRL_SGLANG_PYTHON", REPO / ".venv-sglang/bin/python"))
VOCAB = 128
CONTEXT = 512  # max_position_embeddings of the tiny models = the server's context length


def require_sglang_env() -> None:
    if os.environ.get("PIVOTRL_SKIP_SGLANG") == "1":
        pytest.skip("PIVOTRL_SKIP_SGLANG=1")
    if not SGLANG_PYTHON.exists():
        pytest.fail(
            f"{SGLANG_PYTHON} is missing: run launch/sglang_cpu_env.sh to build the CPU SGLang "
            "environment (or set PIVOTRL_SKIP_SGLANG=1 to skip this tier locally)",
            pytrace=False,
        )


def build_model(
    kind: str, model_dir: Path, seed: int, hidden: int = 64, layers: int = 2, std: float = 0.1
):
    """A random float32 Qwen3 ("dense") or Qwen3-MoE ("moe") saved as an HF folder.

    Weights ~ N(0, std^2) so the next-token distribution is far from uniform; norm scales
    ~ 1 + N(0, 0.1^2). Untied head (sglang's Qwen3-MoE ignores tying). No EOS token, so only
    max_new_tokens and stop_token_ids end a completion. Returns the torch model.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    common = dict(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=CONTEXT,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    if kind == "dense":
        config, cls = Qwen3Config(**common, intermediate_size=2 * hidden), Qwen3ForCausalLM
    else:
        config = Qwen3MoeConfig(
            **common,
            moe_intermediate_size=hidden // 2,
            num_experts=4,
            num_experts_per_tok=2,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[],
        )
        cls = Qwen3MoeForCausalLM
    torch.manual_seed(seed)
    model = cls(config).to(torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
    model.eval()
    model.save_pretrained(model_dir)
    return model


def reference_logprobs(model, prompt: list[int], tokens: tuple[int, ...]) -> np.ndarray:
    """log_softmax of transformers' float32 logits, gathered at `tokens` (after `prompt`)."""
    import torch

    ids = torch.tensor([list(prompt) + list(tokens)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()  # [T, V], float32
    logp = torch.log_softmax(logits, dim=-1)[len(prompt) - 1 : -1]
    return logp.gather(1, torch.tensor(tokens).unsqueeze(1))[:, 0].numpy()


def greedy_reference(model, prompt: list[int], steps: int) -> tuple[list[int], list[float]]:
    """Argmax tokens and their log_softmax, one transformers forward per step."""
    import torch

    ids, logps = list(prompt), []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        token = int(torch.argmax(logp))
        ids.append(token)
        logps.append(float(logp[token]))
    return ids[len(prompt) :], logps


def max_logprob_diff(model, prompts: list[list[int]], groups: list[list[Completion]]) -> float:
    """max |engine logprob - transformers logprob| over every sampled token."""
    diffs = [
        np.abs(np.asarray(c.logprobs) - reference_logprobs(model, prompt, c.token_ids)).max()
        for prompt, group in zip(prompts, groups)
        for c in group
    ]
    return float(max(diffs))


def random_prompts(lengths: list[int], seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, length).tolist() for length in lengths]


def launch_cpu_server(
    model_dir: Path, log_path: Path, weight_version: str = "0", routed_experts: bool = False
) -> ServerProcess:
    return launch(
        ServerConfig(
            model_path=str(model_dir),
            preset="cpu",
            python=str(SGLANG_PYTHON),
            weight_version=weight_version,
            routed_experts=routed_experts,
            log_path=str(log_path),
            startup_timeout_s=600,
        )
    )
