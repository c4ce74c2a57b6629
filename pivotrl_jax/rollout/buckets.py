"""Shape buckets: round request sizes up so a jitted function compiles a few times, not per call.

    bucket(n) = max(minimum, 2^ceil(log2 n)), rounded up to a multiple of `multiple`,
                then capped at `maximum` (never below n)

>>> bucket(5), bucket(17, minimum=16), bucket(3, multiple=4), bucket(600, maximum=768)
(8, 32, 4, 768)
"""

from __future__ import annotations


def bucket(n: int, *, minimum: int = 1, maximum: int | None = None, multiple: int = 1) -> int:
    """The bucket holding size `n` (see the module docstring); raises if `n` > `maximum`."""
    if n < 1:
        raise ValueError(f"bucket size must be positive, got {n}")
    if maximum is not None and n > maximum:
        raise ValueError(f"size {n} exceeds the largest bucket {maximum}")
    size = max(minimum, 1 << (n - 1).bit_length())
    size = -(-size // multiple) * multiple
    if maximum is not None:
        size = min(size, max(n, maximum))
    return size
