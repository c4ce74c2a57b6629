"""Let sglang's routed-experts capture start on CPU (test tooling).

With `--enable-return-routed-experts`, sglang 0.5.23 allocates the host buffer of the captured
expert ids with `pin_memory=True` (`BaseHostCache` in `srt/state_capturer/base.py`); pinning needs
CUDA, so a CPU server crashes at start. This patch pins that buffer only off CPU. The capture
itself is unchanged: `meta_info.routed_experts` then matches transformers' router top-k.

Idempotent: run it again and it changes nothing.
Usage: python patch_sglang_routed_experts.py SITE_PACKAGES
"""

from __future__ import annotations

import pathlib
import sys

MARKER = "# pivotrl-jax CPU guard"
ORIGINAL = """            device="cpu",
            pin_memory=True,
            allocator=HostTensorAllocator(),"""
PATCHED = f"""            device="cpu",
            pin_memory=device != "cpu",  {MARKER}
            allocator=HostTensorAllocator(),"""


def patch(path: pathlib.Path) -> bool:
    """Returns True when the file was changed."""
    text = path.read_text()
    if MARKER in text:
        return False
    if text.count(ORIGINAL) != 1:
        raise SystemExit(f"{path}: expected one pinned host-cache allocation; sglang changed?")
    path.write_text(text.replace(ORIGINAL, PATCHED))
    return True


def main() -> None:
    site_packages = pathlib.Path(sys.argv[1])
    path = site_packages / "sglang" / "srt" / "state_capturer" / "base.py"
    changed = patch(path)
    print(f"{path}: {'patched' if changed else 'already patched'}")


if __name__ == "__main__":
    main()
