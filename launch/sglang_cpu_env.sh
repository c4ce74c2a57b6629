#!/usr/bin/env bash
# Builds the CPU-only SGLang 0.5.23 environment that the sglang test tier and the CPU server use.
#
#   launch/sglang_cpu_env.sh [VENV_DIR]      # default: <repo>/.venv-sglang (git-ignored)
#
# Idempotent: a stamp file in the venv holds a hash of this script and the lock list (comments
# aside) and the interpreter version. When it matches, the script only re-applies the two cheap
# tooling steps and exits (well under a second). When it does not (first run, changed pins, an
# interrupted build), the venv is rebuilt from scratch: 3 to 10 minutes on 2 shared cores, ~3.2 GB.
#
# Steps (the recipe of shared/REFERENCE.md §3):
#   1. torch==2.13.0, the CPU wheel;
#   2. sglang's non-CUDA requirements, exactly as locked in launch/sglang-cpu-requirements.txt;
#   3. sglang==0.5.23 and torchvision==0.28.0 without their dependencies (CUDA-only ones);
#   4. test tooling (tests/tooling/README.md): guard torchvision's fake-op registrations, let the
#      routed-experts capture (--enable-return-routed-experts) allocate unpinned memory on CPU,
#      and put the pure-Python stand-in `sgl_kernel` on the venv's sys.path through a .pth file.
# Environment: PYTHON (default python3, needs >= 3.11).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(realpath -m "${1:-$ROOT/.venv-sglang}")"
LOCK="$ROOT/launch/sglang-cpu-requirements.txt"
TOOLING="$ROOT/tests/tooling"
PYTHON="${PYTHON:-python3}"
SGLANG_VERSION=0.5.23
TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
STAMP="$VENV/.pivotrl-sglang-stamp"

# What the venv depends on: this script and the lock list (comments aside), and the interpreter.
want="$({ grep -hv '^[[:space:]]*#' "${BASH_SOURCE[0]}" "$LOCK"; "$PYTHON" --version; } \
  | sha256sum | cut -d' ' -f1)"

# The cheap, idempotent tooling steps; run on every call so a moved checkout still works.
install_tooling() {
  local site
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$VENV/bin/python" "$TOOLING/patch_torchvision_meta.py" "$site" >/dev/null
  "$VENV/bin/python" "$TOOLING/patch_sglang_routed_experts.py" "$site" >/dev/null
  local pth="$site/pivotrl_cpu_test_tooling.pth"
  if [[ "$(cat "$pth" 2>/dev/null)" != "$TOOLING" ]]; then
    echo "$TOOLING" >"$pth"
  fi
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  install_tooling
  echo "sglang CPU env up to date: $VENV"
  exit 0
fi

start=$(date +%s)
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || { echo "error: $PYTHON is older than 3.11 (sglang $SGLANG_VERSION needs >= 3.11)" >&2; exit 1; }
if [[ -e "$VENV" ]]; then
  if [[ ! -f "$VENV/pyvenv.cfg" ]]; then
    echo "error: $VENV exists and is not a virtual environment; refusing to replace it" >&2
    exit 1
  fi
  echo "rebuilding $VENV (stamp missing or out of date)"
  rm -rf "$VENV"
fi

"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet --no-input)
"${pip[@]}" "torch==$TORCH_VERSION"
"${pip[@]}" --no-deps -r "$LOCK"
"${pip[@]}" --no-deps "sglang==$SGLANG_VERSION" "torchvision==$TORCHVISION_VERSION"
install_tooling

# Smoke check: the server's CPU path imports (sglang, torchvision, the stand-in sgl_kernel).
SGLANG_USE_CPU_ENGINE=1 "$VENV/bin/python" -c '
import sgl_kernel, sglang, torch, torchvision
from sglang.srt.mem_cache import allocation  # imports sgl_kernel on the CPU path
assert sglang.__version__ == "'"$SGLANG_VERSION"'", sglang.__version__
assert not torch.cuda.is_available()
'
echo "$want" >"$STAMP"
echo "sglang CPU env built in $(( $(date +%s) - start )) s: $VENV"
