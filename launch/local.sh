#!/usr/bin/env bash
# Run one pivotrl command on this machine (CPU, or all the GPUs/TPU chips JAX sees here).
#
#   launch/local.sh [--sim-devices N] [--dry-run] -- COMMAND [ARGS...]
#
#   --sim-devices N   simulate N CPU devices (sharding checks; no speed-up)
#   --dry-run         print the command instead of running it
#   --help            print this text
#
# The project's .venv/bin/python runs it (PIVOTRL_PYTHON overrides); paths are relative to the
# repository root. Example: launch/local.sh -- train --config=configs/train.py:tiny ...
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sim=""
while (($#)); do
  case $1 in
    --sim-devices) sim=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
(($#)) || die "no pivotrl command given (launch/local.sh [options] -- COMMAND ...)"
need_python
env=()
if [[ -n $sim ]]; then
  env=("XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$sim" JAX_PLATFORMS=cpu)
fi
run_exec env "${env[@]}" "$PY" -m pivotrl_jax.cli "$@"
