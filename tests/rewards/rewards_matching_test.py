"""Kuhn's matching against brute force over all injective assignments."""

import itertools
import random

from pivotrl_jax.rewards.matching import maximum_matching


def brute_force_size(edges, n_right):
    """Largest matching by trying every subset of left vertices and every assignment."""
    n_left = len(edges)
    best = 0
    for perm in itertools.permutations(range(n_right), min(n_left, n_right)):
        for lefts in itertools.combinations(range(n_left), len(perm)):
            size = sum(1 for i, j in zip(lefts, perm) if j in edges[i])
            best = max(best, size)
    return best


def test_against_brute_force_on_random_graphs():
    rng = random.Random(0)
    for _ in range(300):
        n_left, n_right = rng.randint(0, 5), rng.randint(0, 5)
        p = rng.random()
        edges = [[j for j in range(n_right) if rng.random() < p] for _ in range(n_left)]
        pairs = maximum_matching(edges, n_right)
        # a valid matching: along edges, no vertex used twice
        assert all(j in edges[i] for i, j in pairs)
        assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
        assert len(pairs) == brute_force_size(edges, n_right)


def test_augmenting_path_needed():
    # greedy would give 0->0 and leave 1 unmatched; the augmenting path moves 0 to 1
    assert maximum_matching([[0, 1], [0]], 2) == [(0, 1), (1, 0)]


def test_duplicates_match_one_to_one():
    # two identical expected calls, three identical candidates: only two pairs
    assert len(maximum_matching([[0, 1, 2], [0, 1, 2]], 3)) == 2
    assert maximum_matching([], 0) == []
    assert maximum_matching([[], []], 3) == []
