"""The project tokenizer: training, Hugging Face layout, special tokens, chat template."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from transformers import AutoTokenizer

from pivotrl_jax.data import tokenizer as tokenizer_lib


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    tokenizer_lib.train_tokenizer([], vocab_size=1024, out_dir=out)
    return out


def test_saved_layout_loads_with_auto_tokenizer(saved):
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= set(
        os.listdir(saved)
    )
    tok = AutoTokenizer.from_pretrained(saved)
    assert len(tok) == 1024
    ids = [tok.convert_tokens_to_ids(t) for t in tokenizer_lib.SPECIAL_TOKENS]
    assert ids == list(range(9))
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", 0)
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)
    # Special tokens are single ids inside running text.
    assert tok.encode("a<tool_call>b", add_special_tokens=False)[1] == 3


def test_deterministic_and_extra_texts_change_vocab(tmp_path, saved):
    tokenizer_lib.train_tokenizer([], vocab_size=1024, out_dir=tmp_path / "again")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (tmp_path / "again" / name).read_bytes() == (saved / name).read_bytes()
    extra = tokenizer_lib.train_tokenizer(["zyxwvut " * 50] * 20, vocab_size=1024)
    assert len(extra.encode("zyxwvut", add_special_tokens=False)) == 1


@pytest.mark.parametrize(
    "text", ["héllo wörld 你好", "  two  spaces\n\n\ttab", '{"a": [1, 2.5e-3]}', "rm -rf /tmp/x"]
)
def test_byte_level_round_trip(saved, text):
    tok = AutoTokenizer.from_pretrained(saved)
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_vocab_size_below_bytes_and_specials_raises():
    with pytest.raises(ValueError, match="at least 265"):
        tokenizer_lib.train_tokenizer([], vocab_size=100)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def test_chat_template_renders_qwen3_layout(saved):
    tok = AutoTokenizer.from_pretrained(saved)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "Call the tool.",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"c": "P"}}},
                {"function": {"name": "get_weather", "arguments": '{"c": "O"}'}},
            ],
        },
        {"role": "tool", "content": "3"},
        {"role": "tool", "content": "5"},
    ]
    text = tok.apply_chat_template(
        messages, tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    expected = (
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist"
        " with the user query.\n\nYou are provided with function signatures within <tools></tools>"
        ' XML tags:\n<tools>\n{"type": "function", "function": {"name": "get_weather",'
        ' "parameters": {}}}\n</tools>\n\nFor each function call, return a json object with'
        " function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nCall the tool.\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"c": "P"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"c": "O"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n3\n</tool_response>\n<tool_response>\n5\n"
        "</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    assert text == expected


def test_chat_template_drops_reasoning_before_last_query_and_no_tools(saved):
    tok = AutoTokenizer.from_pretrained(saved)
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "reasoning_content": "r1"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d", "reasoning_content": "r2"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
        "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n<think>\nr2\n</think>\n\nd"
        "<|im_end|>\n"
    )
    no_think = tok.apply_chat_template(
        messages[:1], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_phrases_are_single_tokens_that_decode_back(tmp_path):
    """Phrases take the last ids (the total stays within vocab_size); the chat template's
    preamble and a tool spec become one token each, and a rendered conversation (transformers'
    own chat template rendering) decodes back to the same text."""
    import json

    tool = {
        "type": "function",
        "function": {"name": "run", "parameters": {"type": "object", "properties": {}}},
    }
    phrases = tokenizer_lib.phrase_tokens([json.dumps(tool)])
    assert json.dumps(tool) in phrases
    assert not any(p.strip().isalnum() for p in phrases)  # no bare words such as "user"
    tokenizer_lib.train_tokenizer([], vocab_size=1024, out_dir=tmp_path, phrases=phrases)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) <= 1024
    ids = [tok.convert_tokens_to_ids(p) for p in phrases]
    assert ids == list(range(len(tok) - len(phrases), len(tok)))
    messages = [
        {"role": "system", "content": "Be brief. The user is at /home/user."},
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "run", "arguments": {}}}],
        },
    ]
    text = tok.apply_chat_template(messages, tools=[tool], tokenize=False)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    pieces = [tok.decode([i]) for i in ids]
    assert json.dumps(tool) in pieces and '", "arguments": ' in pieces
    assert "/user" in "".join(pieces) and "user" in pieces  # the role name stays ordinary text
    plain = tokenizer_lib.train_tokenizer([], vocab_size=1024)
    assert len(ids) < len(plain.encode(text, add_special_tokens=False)) - 60
