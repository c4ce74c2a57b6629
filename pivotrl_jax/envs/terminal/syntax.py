"""Shell syntax: POSIX quoting (as `shlex.split` reads it), globs, `;` `&&` `||` `|` `<` `>` `>>`.

A word remembers which of its `*?[` characters were unquoted, so `'*.log'` stays literal while
`logs/*.log` expands. `parse` turns a command line into a chain of pipelines of simple commands;
it raises `ShellSyntaxError` on what this shell does not read (unclosed quotes, a lone `&`,
a redirect without a target, an empty command between operators, a trailing backslash).

>>> chain = parse("mkdir -p 'a b' && mv logs/*.log archive/ > out.txt")
>>> [(op, [[w.text for w in c.argv] for c in p]) for op, p in chain]
[(None, [['mkdir', '-p', 'a b']]), ('&&', [['mv', 'logs/*.log', 'archive/']])]
>>> chain[1][1][0].argv[1].pattern, chain[1][1][0].redirects[0][0]
('logs/*.log', '>')
"""

from __future__ import annotations

from dataclasses import dataclass

GLOB_CHARS = "*?["
_SPACE = " \t\n"
_OPERATORS = ("&&", "||", ">>", ";", "|", ">", "<")


class ShellSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Word:
    """`text`: the word with quotes removed; `pattern`: an fnmatch pattern when it has unquoted
    glob characters (quoted ones escaped as `[*]`), else None."""

    text: str
    pattern: str | None = None


@dataclass(frozen=True)
class Command:
    argv: tuple[Word, ...]
    redirects: tuple[tuple[str, Word], ...] = ()  # (operator, target)


Pipeline = tuple[Command, ...]
Chain = list[tuple[str | None, Pipeline]]  # (operator joining it to the previous, pipeline)


def _escape(ch: str) -> str:
    return f"[{ch}]" if ch in GLOB_CHARS else ch


def tokenize(line: str) -> list[Word | str]:
    """Words and operator strings, in order."""
    tokens: list[Word | str] = []
    text: list[str] = []
    pattern: list[str] = []
    in_word = globbed = False

    def flush() -> None:
        nonlocal in_word, globbed
        if in_word:
            tokens.append(Word("".join(text), "".join(pattern) if globbed else None))
        text.clear()
        pattern.clear()
        in_word = globbed = False

    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in _SPACE:
            flush()
            i += 1
        elif c == "'":
            j = line.find("'", i + 1)
            if j < 0:
                raise ShellSyntaxError("unterminated single quote")
            text.extend(line[i + 1 : j])
            pattern.extend(_escape(ch) for ch in line[i + 1 : j])
            in_word, i = True, j + 1
        elif c == '"':
            i += 1
            while i < n and line[i] != '"':
                ch = line[i]
                if ch == "\\" and i + 1 < n and line[i + 1] in '"\\':
                    ch = line[i + 1]
                    i += 1
                text.append(ch)
                pattern.append(_escape(ch))
                i += 1
            if i >= n:
                raise ShellSyntaxError("unterminated double quote")
            in_word, i = True, i + 1
        elif c == "\\":
            if i + 1 == n:
                raise ShellSyntaxError("nothing to escape after a trailing backslash")
            text.append(line[i + 1])
            pattern.append(_escape(line[i + 1]))
            in_word, i = True, i + 2
        elif c in "&|;<>":
            flush()
            op = next((o for o in _OPERATORS if line.startswith(o, i)), None)
            if op is None:
                raise ShellSyntaxError("background jobs ('&') are not supported")
            tokens.append(op)
            i += len(op)
        else:
            if c in GLOB_CHARS:
                globbed = True
            text.append(c)
            pattern.append(c)
            in_word, i = True, i + 1
    flush()
    return tokens


def parse(line: str) -> Chain:
    """A command line -> [(joining operator, pipeline)]; the first operator is None."""
    chain: Chain = []
    pipeline: list[Command] = []
    argv: list[Word] = []
    redirects: list[tuple[str, Word]] = []
    joiner: str | None = None
    tokens = tokenize(line)
    i = 0

    def end_command() -> None:
        if not argv:
            raise ShellSyntaxError("syntax error: empty command")
        pipeline.append(Command(tuple(argv), tuple(redirects)))
        argv.clear()
        redirects.clear()

    while i < len(tokens):
        tok = tokens[i]
        if isinstance(tok, Word):
            argv.append(tok)
        elif tok in (">", ">>", "<"):
            target = tokens[i + 1] if i + 1 < len(tokens) else None
            if not isinstance(target, Word):
                raise ShellSyntaxError(f"syntax error near '{tok}'")
            redirects.append((tok, target))
            i += 1
        elif tok == "|":
            end_command()
        else:
            end_command()
            chain.append((joiner, tuple(pipeline)))
            pipeline.clear()
            joiner = tok
            if tok == ";" and i == len(tokens) - 1:
                return chain
        i += 1
    if argv or redirects or pipeline or not chain:
        end_command()
        chain.append((joiner, tuple(pipeline)))
    return chain
