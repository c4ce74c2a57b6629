"""Shape buckets against their definition, checked by brute force."""

import pytest

from pivotrl_jax.rollout.buckets import bucket


def _reference(n, per_octave):
    """The smallest size >= n among 2^(k-1) * (1 + i / per_octave), or n's power of two."""
    sizes = {1 << k for k in range(16)}
    for k in range(1, 16):
        base = 1 << (k - 1)
        sizes |= {base + i * max(base // per_octave, 1) for i in range(per_octave + 1)}
    return min(s for s in sizes if s >= n)


@pytest.mark.parametrize("per_octave", [1, 2, 4])
def test_bucket_is_the_smallest_allowed_size(per_octave):
    for n in range(1, 3000):
        size = bucket(n, per_octave=per_octave)
        assert size == _reference(n, per_octave), n
        assert size - n < max(n / per_octave, 1)  # the padding bound


def test_minimum_multiple_and_maximum():
    assert bucket(3, minimum=8) == 8
    assert bucket(9, minimum=8, multiple=3) == 18  # 16 rounded up to a multiple of 3
    assert bucket(600, maximum=700) == 700
    assert bucket(700, maximum=700) == 700
    with pytest.raises(ValueError, match="exceeds"):
        bucket(701, maximum=700)
    with pytest.raises(ValueError, match="positive"):
        bucket(0)
