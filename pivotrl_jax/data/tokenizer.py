"""The project tokenizer: a byte-level BPE with Qwen3 special tokens and chat template.

Trained offline with the `tokenizers` library on the text shipped in
`pivotrl_jax/data/tokenizer_corpus/` (plus any texts a caller adds), so tiny CPU models
need no model hub. The pre-tokenizer is Qwen2/Qwen3's split pattern followed by byte-level
encoding, and the chat template (`chat_template.jinja` beside this file) renders tools,
tool calls, tool responses and reasoning the way Qwen3's does.

>>> tok = train_tokenizer([], vocab_size=512, out_dir=None)
>>> tok.decode(tok.encode("ls -la && echo ok"))
'ls -la && echo ok'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = (
    PAD_TOKEN,
    BOS_TOKEN,
    EOS_TOKEN,
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
DEFAULT_VOCAB_SIZE = 1024

# Qwen2/Qwen3 pre-tokenisation: contractions, letter runs (with one leading non-letter),
# single digits, punctuation runs with trailing newlines, newline runs, other whitespace.
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_HERE = Path(__file__).parent
CORPUS_DIR = _HERE / "tokenizer_corpus"
CHAT_TEMPLATE_PATH = _HERE / "chat_template.jinja"


def shipped_corpus() -> list[str]:
    """Lines of the training text shipped with the package, in a fixed order."""
    lines: list[str] = []
    for path in sorted(CORPUS_DIR.glob("*.txt")):
        lines.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line)
    return lines


def chat_template() -> str:
    return CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")


def template_phrases() -> list[str]:
    """The fixed text the chat template inserts (its quoted literals, escapes decoded).

    Adding these to a small vocabulary's training text lets it encode the tool preamble of
    every system turn in a few tokens instead of letter by letter.
    """
    literals = re.findall(r"'((?:[^'\\\n]|\\.)+)'", chat_template())
    out = []
    for lit in literals:
        text = lit.replace("\\n", "\n").replace("\\'", "'")
        if len(text.strip()) > 3 and not text.startswith("<|"):
            out.append(text)
    return out


_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")


def phrase_tokens(extra: Iterable[str] = ()) -> list[str]:
    """Whole phrases to encode as one token each: the chat template's fixed text between its
    special tokens (the tool preamble, the tool-call and tool-response wrappers), then `extra`
    (a domain's fixed prompt text, e.g. its tool specs), without duplicates.

    >>> '", "arguments": ' in phrase_tokens()
    True
    """
    out: dict[str, None] = {}
    for text in [*template_phrases(), *extra]:
        for piece in _SPECIAL_SPLIT.split(text):
            # Bare words ('user', 'system': role names the template compares) would also
            # match inside ordinary text; a phrase has punctuation or a line break.
            if piece not in SPECIAL_TOKENS and len(piece.strip()) > 3 and not piece.isalnum():
                out.setdefault(piece)
    return list(out)


def _bpe(vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(
    texts: Iterable[str] = (),
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    out_dir: str | Path | None = None,
    phrases: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """Trains the project's byte-level BPE tokenizer; deterministic for the same inputs.

    Args:
      texts: extra training texts, added after the shipped corpus (pass `()` for none).
      vocab_size: total vocabulary size, including the 256 byte symbols, the 9 special
        tokens (ids 0..8 in `SPECIAL_TOKENS` order: `<|endoftext|>` is pad, `<|im_end|>` eos)
        and the phrases.
      phrases: texts encoded as one token each wherever they occur (`phrase_tokens()`: the
        chat template's fixed text), taking the last ids of the vocabulary.
      out_dir: if given, the tokenizer is saved there in Hugging Face layout
        (`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`), loadable with
        `transformers.AutoTokenizer.from_pretrained(out_dir)`.

    Returns:
      A `PreTrainedTokenizerFast` carrying the Qwen3-style chat template.
    """
    phrases = list(dict.fromkeys(phrases))
    min_size = 256 + len(SPECIAL_TOKENS) + len(phrases)
    if vocab_size < min_size:
        raise ValueError(f"vocab_size must be at least {min_size}, got {vocab_size}")
    tok = _bpe(vocab_size)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(phrases),
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [*shipped_corpus(), *texts]
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    tok.add_tokens([AddedToken(p, normalized=False, special=False) for p in phrases])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        extra_special_tokens=list(SPECIAL_TOKENS[3:]),
        chat_template=chat_template(),
        model_max_length=1 << 20,
        clean_up_tokenization_spaces=False,
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(out_dir))
    return fast
