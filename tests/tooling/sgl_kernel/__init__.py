"""CPU test stand-in for SGLang's `sgl_kernel` (test tooling only; see tests/tooling/README.md).

sglang 0.5.23 imports `sgl_kernel.assign_req_to_token_pool_cpu` on its CPU path, and no CPU wheel
of `sgl_kernel` exists. This pure-PyTorch module provides that one op; every other name resolves
to a function that raises NotImplementedError, so a code path that needs a real kernel fails
loudly instead of silently computing something else.

It is put on `sys.path` only inside the CPU test venv (`.venv-sglang`) by
`launch/sglang_cpu_env.sh`. Never install it next to a real `sgl_kernel`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__version__ = "0.0.0+pivotrl-cpu-stand-in"


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,  # [B]
    req_to_token: torch.Tensor,  # [R, S] token-pool slot of each position of each request row
    start_offset: torch.Tensor,  # [B]
    end_offset: torch.Tensor,  # [B]
    out_cache_loc: torch.Tensor,  # [sum(end - start)] new slots, request after request
    pool_len: int,
) -> None:
    """req_to_token[req_pool_indices[b], start[b]:end[b]] = the b-th slice of out_cache_loc.

    Same contract as sglang's Triton `assign_req_to_token_pool` kernel: the slices of
    `out_cache_loc` are laid out back to back in batch order.
    """
    del pool_len  # the row length; implied by req_to_token's shape here
    starts = start_offset.tolist()
    ends = end_offset.tolist()
    rows = req_pool_indices.tolist()
    offset = 0
    for row, start, end in zip(rows, starts, ends, strict=True):
        length = end - start
        req_to_token[row, start:end] = out_cache_loc[offset : offset + length].to(
            req_to_token.dtype
        )
        offset += length


def __getattr__(name: str) -> Callable[..., None]:
    if name.startswith("_"):
        raise AttributeError(name)

    def missing(*args: object, **kwargs: object) -> None:
        raise NotImplementedError(
            f"sgl_kernel.{name} is not provided by the CPU test stand-in "
            "(tests/tooling/sgl_kernel); this code path needs the real sgl_kernel"
        )

    missing.__name__ = name
    return missing
