"""Maximum bipartite matching between expected and candidate calls (Kuhn's augmenting paths).

`edges[i]` lists the candidates j that expected item i accepts. For each i in turn we search for an
augmenting path: take a free j, or a j whose current partner can move to another candidate. Each
search is O(E), so the whole is O(V·E): nothing for the handful of parallel calls in one turn.

>>> maximum_matching([[0, 1], [0]], 2)
[(0, 1), (1, 0)]
"""

from __future__ import annotations

from collections.abc import Sequence


def maximum_matching(edges: Sequence[Sequence[int]], n_right: int) -> list[tuple[int, int]]:
    """A maximum set of disjoint (left, right) pairs along `edges`, sorted by left index."""
    partner_of_right: list[int] = [-1] * n_right

    def augment(i: int, seen: list[bool]) -> bool:
        for j in edges[i]:
            if seen[j]:
                continue
            seen[j] = True
            if partner_of_right[j] < 0 or augment(partner_of_right[j], seen):
                partner_of_right[j] = i
                return True
        return False

    for i in range(len(edges)):
        if edges[i]:
            augment(i, [False] * n_right)
    return sorted((i, j) for j, i in enumerate(partner_of_right) if i >= 0)
