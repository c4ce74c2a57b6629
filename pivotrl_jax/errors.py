"""Errors the `pivotrl` command reports as a message and exit code 2 instead of a traceback."""

from __future__ import annotations

import os


class PivotError(Exception):
    """Base class for errors caused by the user's input, configuration or environment."""


class ConfigError(PivotError):
    """A configuration key is unknown, has the wrong type, or a required one is missing."""


class InputError(PivotError):
    """Bad input data, located by file, line (1-based) and field.

    >>> str(InputError("not valid JSON", path="a.jsonl", line=3, field="messages[1].content"))
    'a.jsonl:3: messages[1].content: not valid JSON'
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        field: str | None = None,
        reason: str | None = None,
    ):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        # A short machine-readable category used when counting skipped records.
        self.reason = reason or "invalid"
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"
