"""Shape buckets: round request sizes up so a jitted function compiles a few times, not per call.

With g buckets per octave, n in (2^(k-1), 2^k] rounds up to a multiple of 2^(k-1) / g:

    bucket(n) = ceil(n / s) * s,  s = max(2^(k-1) / g, 1),  k = ceil(log2 n)

(g = 1: the next power of two; g = 4 wastes at most 25%), then at least `minimum`, rounded up to
a multiple of `multiple`, and capped at `maximum` (never below n).

>>> bucket(5), bucket(17, minimum=16), bucket(3, multiple=4), bucket(600, maximum=768)
(8, 32, 4, 768)
>>> bucket(1100), bucket(1100, per_octave=4), bucket(1024, per_octave=4)
(2048, 1280, 1024)
"""

from __future__ import annotations


def bucket(
    n: int,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    multiple: int = 1,
    per_octave: int = 1,
) -> int:
    """The bucket holding size `n` (see the module docstring); raises if `n` > `maximum`."""
    if n < 1:
        raise ValueError(f"bucket size must be positive, got {n}")
    if maximum is not None and n > maximum:
        raise ValueError(f"size {n} exceeds the largest bucket {maximum}")
    step = max((1 << (n - 1).bit_length()) // 2 // per_octave, 1)
    size = max(minimum, -(-n // step) * step)
    size = -(-size // multiple) * multiple
    if maximum is not None:
        size = min(size, max(n, maximum))
    return size
