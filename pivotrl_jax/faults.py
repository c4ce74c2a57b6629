"""Crash injection: the process kills itself with SIGKILL at a named point of the code.

Long jobs call `point("records.before_rename")` where a crash is worth testing (between a shard
and its rename, between a train step and its checkpoint, ...). Nothing happens unless the
environment asks for it:

    PIVOTRL_FAULT="records.before_rename@3"        SIGKILL the 3rd time that point is passed
    PIVOTRL_FAULT="checkpoint.before_save@2+0.05"  at the 2nd pass, arm a timer: SIGKILL 0.05 s
                                                   later, in the middle of whatever runs then
                                                   (or at exit, if the process gets there first)
    PIVOTRL_FAULT="a@1,b@4"                        whichever comes first
    PIVOTRL_FAULT_TRACE=/tmp/points.txt            append each point's name as it is passed

A test runs a command once with a trace to learn which points it passes and how often, then
again with kills planned over that sequence, then once more to let it finish (see
tests/reliability/). SIGKILL cannot be caught: no `finally`, no `atexit`, no buffered write runs,
exactly as when the machine or a scheduler kills the job. With neither variable set, a point
costs one global lookup.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import threading
from collections import Counter

FAULT_ENV = "PIVOTRL_FAULT"
TRACE_ENV = "PIVOTRL_FAULT_TRACE"
_FAULT = re.compile(r"(?P<name>[\w.\-]+)(?:@(?P<count>[1-9]\d*))?(?:\+(?P<delay>\d+(?:\.\d*)?))?")


@dataclasses.dataclass(frozen=True)
class Fault:
    """Kill at the `count`-th pass of `name` (1-based), `delay_s` seconds after it."""

    name: str
    count: int = 1
    delay_s: float = 0.0

    def __str__(self) -> str:
        delay = f"+{self.delay_s:g}" if self.delay_s else ""
        return f"{self.name}@{self.count}{delay}"


def parse(spec: str) -> tuple[Fault, ...]:
    """`"a@2,b@1+0.5"` -> (Fault("a", 2), Fault("b", 1, 0.5)); a bare name means `@1`.

    >>> parse("records.before_rename@3,train.step_done@1+0.25")
    (Fault(name='records.before_rename', count=3, delay_s=0.0), Fault(name='train.step_done', count=1, delay_s=0.25))
    """  # noqa: E501
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        m = _FAULT.fullmatch(item)
        if m is None:
            raise ValueError(f"{FAULT_ENV}: cannot read {item!r} (want name@count[+seconds])")
        faults.append(Fault(m["name"], int(m["count"] or 1), float(m["delay"] or 0.0)))
    return tuple(faults)


class _Injector:
    def __init__(self, faults: tuple[Fault, ...], trace: str | None):
        self.faults = {f.name: f for f in faults}
        self.trace = open(trace, "a", encoding="utf-8") if trace else None  # noqa: SIM115
        self.passes: Counter = Counter()
        self.lock = threading.Lock()

    def hit(self, name: str) -> None:
        with self.lock:
            self.passes[name] += 1
            n = self.passes[name]
            if self.trace is not None:
                self.trace.write(name + "\n")
                self.trace.flush()
        fault = self.faults.get(name)
        if fault is None or n != fault.count:
            return
        if fault.delay_s:
            # Not a daemon: should the work finish first, the interpreter waits for the timer
            # at exit, so a planned kill always lands.
            threading.Timer(fault.delay_s, kill_self).start()
        else:
            kill_self()


_injector: _Injector | None = None
_active: bool | None = None  # None: the environment is not read yet


def kill_self() -> None:
    """SIGKILL this process now (as `kill -9` would)."""
    os.kill(os.getpid(), signal.SIGKILL)


def point(name: str) -> None:
    """A place where a planned crash may happen (see the module docstring)."""
    global _active, _injector
    if _active is False:
        return
    if _active is None:
        spec, trace = os.environ.get(FAULT_ENV, ""), os.environ.get(TRACE_ENV, "")
        _active = bool(spec or trace)
        if not _active:
            return
        _injector = _Injector(parse(spec), trace or None)
    _injector.hit(name)
