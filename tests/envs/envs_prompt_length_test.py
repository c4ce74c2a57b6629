"""Terminal prompts stay short with the demo's tokenizer: the chat template's fixed text and the
domain's tool spec are one token each (`configs/model.py` tokenizer.phrases)."""

import json
import statistics

from pivotrl_jax.data.tokenizer import phrase_tokens, train_tokenizer
from pivotrl_jax.envs import generate_sft


def _ids(tok, messages, tools):
    out = tok.apply_chat_template(messages, tools=tools, tokenize=True, add_generation_prompt=True)
    return out["input_ids"] if hasattr(out, "keys") else out


def test_median_terminal_candidate_prompt_is_at_most_120_tokens():
    rows = generate_sft("terminal", 200, seed=1)
    render = train_tokenizer((), vocab_size=512)
    texts = [
        render.apply_chat_template(r["messages"], tools=r["tools"], tokenize=False) for r in rows
    ]
    tools = sorted({json.dumps(t, ensure_ascii=False) for r in rows for t in r["tools"]})
    tok = train_tokenizer(texts, vocab_size=1024, phrases=phrase_tokens(tools))
    lengths = [
        len(_ids(tok, r["messages"][:k], r["tools"]))
        for r in rows
        for k, m in enumerate(r["messages"])
        if m["role"] == "assistant"
    ]
    assert statistics.median(lengths) <= 120, statistics.median(lengths)
    plain = train_tokenizer(texts, vocab_size=1024)
    r = rows[0]
    assert (
        len(_ids(plain, r["messages"][:2], r["tools"]))
        - len(_ids(tok, r["messages"][:2], r["tools"]))
        > 60
    )
