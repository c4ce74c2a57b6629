"""Guard torchvision's fake-op registrations so it imports next to CPU torch (test tooling).

torchvision 0.28.0 from PyPI is built against CUDA torch; with the CPU torch wheel its compiled ops
are absent and `torch.library.register_fake("torchvision::nms")` raises at import. sglang imports
torchvision, so the CPU test server would not start. This patch wraps the two `register_fake`
decorators in `_meta_registrations.py` so they apply only when `torchvision.extension._has_ops()`.

Idempotent: run it again and it changes nothing.
Usage: python patch_torchvision_meta.py SITE_PACKAGES
"""

from __future__ import annotations

import pathlib
import sys

MARKER = "# pivotrl-jax CPU guard"
OPS = ("nms", "qnms")


def guarded_decorator(op: str) -> str:
    return (
        f"@(torch.library.register_fake('torchvision::{op}')  {MARKER}\n"
        "  if torchvision.extension._has_ops() else (lambda fn: fn))"
    )


def patch(path: pathlib.Path) -> bool:
    """Returns True when the file was changed."""
    text = path.read_text()
    if MARKER in text:
        return False
    for op in OPS:
        original = f'@torch.library.register_fake("torchvision::{op}")'
        if text.count(original) != 1:
            raise SystemExit(f"{path}: expected one `{original}`; torchvision version changed?")
        text = text.replace(original, guarded_decorator(op))
    path.write_text(text)
    return True


def main() -> None:
    site_packages = pathlib.Path(sys.argv[1])
    path = site_packages / "torchvision" / "_meta_registrations.py"
    changed = patch(path)
    print(f"{path}: {'patched' if changed else 'already patched'}")


if __name__ == "__main__":
    main()
