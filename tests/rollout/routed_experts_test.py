"""Routing replay plumbing without a server: SGLang's base64 routed-experts layout decoded by hand,
and the server flag that turns the capture on."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from pivotrl_jax.rollout.server import ServerConfig, command
from pivotrl_jax.rollout.sglang_engine import decode_routed_experts


def test_decode_routed_experts_layout():
    # 3 fed tokens, 2 layers, top-2: little-endian int32, token-major, then layer, then rank.
    ids = np.arange(12, dtype="<i4").reshape(3, 2, 2)
    encoded = base64.b64encode(ids.tobytes()).decode()
    got = decode_routed_experts(encoded, tokens=3, top_k=2)
    assert got.dtype == np.int32 and got.shape == (3, 2, 2)
    assert got[2, 1].tolist() == [10, 11]  # token 2, layer 1
    with pytest.raises(ValueError, match="not a whole"):
        decode_routed_experts(encoded, tokens=4, top_k=2)


def test_server_flag_only_when_asked():
    plain = command(ServerConfig(model_path="m"), 30000)
    replay = command(ServerConfig(model_path="m", routed_experts=True), 30000)
    assert "--enable-return-routed-experts" not in plain
    assert "--enable-return-routed-experts" in replay
