"""Shell syntax: quoting agrees with shlex.split; operators, redirects and glob marks."""

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotrl_jax.envs.terminal.syntax import ShellSyntaxError, Word, parse, tokenize

# Characters with quoting meaning, plus ordinary ones; no operators (shlex.split has none).
_ALPHABET = st.sampled_from(list("ab.-/ '\"\\\t*#"))


@settings(max_examples=400, deadline=None)
@given(st.text(_ALPHABET, max_size=14))
def test_words_match_shlex_split(line):
    try:
        expected = shlex.split(line)
    except ValueError:  # unclosed quote or trailing escape
        expected = None
    if expected is None:
        with pytest.raises(ShellSyntaxError):
            tokenize(line)
        return
    assert [w.text for w in tokenize(line)] == expected


def test_glob_marks_only_unquoted_wildcards():
    words = tokenize("""ls *.log '*.log' "a*"b*  x\\*""")
    assert words == [
        Word("ls"),
        Word("*.log", "*.log"),
        Word("*.log"),
        Word("a*b*", "a[*]b*"),
        Word("x*"),
    ]


def test_parse_operators_and_redirects():
    chain = parse("mkdir -p a && echo 'x y' >> a/f; cat < a/f | wc -l || echo no")
    shape = [
        (op, [([w.text for w in c.argv], [(r, t.text) for r, t in c.redirects]) for c in p])
        for op, p in chain
    ]
    assert shape == [
        (None, [(["mkdir", "-p", "a"], [])]),
        ("&&", [(["echo", "x y"], [(">>", "a/f")])]),
        (";", [(["cat"], [("<", "a/f")]), (["wc", "-l"], [])]),
        ("||", [(["echo", "no"], [])]),
    ]


def test_trailing_semicolon_is_allowed():
    assert len(parse("ls;")) == 1


@pytest.mark.parametrize(
    "line", ["", "&& ls", "ls |", "echo >", "ls & pwd", "echo 'open", "a ; ; b"]
)
def test_bad_syntax_raises(line):
    with pytest.raises(ShellSyntaxError):
        parse(line)
