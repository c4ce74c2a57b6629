#!/usr/bin/env bash
# A TPU pod slice: one JAX process on every worker, all started at once.
#
#   launch/tpu_pod.sh --tpu NAME --zone ZONE [--project ID] [--dir DIR] -- COMMAND [ARGS...]
#       from any machine with gcloud: runs `launch/tpu_pod.sh -- COMMAND ARGS` in DIR (default
#       pivotrl-jax, under the home folder) on every worker of the slice, through
#       `gcloud compute tpus tpu-vm ssh --worker=all`
#   launch/tpu_pod.sh -- COMMAND [ARGS...]
#       on one worker (what the line above runs on each): the project's .venv/bin/python (set
#       PIVOTRL_PYTHON to override) runs `pivotrl COMMAND ARGS` with PIVOTRL_DISTRIBUTED=1, so
#       jax.distributed.initialize() detects the slice; grain gives each process its slice of the
#       data and the mesh spans every chip
#
#   --dry-run   print the commands instead of running them
#   --help      print this text
#
# Example: launch/tpu_pod.sh --tpu my-v5p-64 --zone us-east5-a -- train \
#              --config=configs/train.py --config.model_dir=gs://... --output runs/train
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tpu="" zone="" project="" dir="pivotrl-jax"
while (($#)); do
  case $1 in
    --tpu) tpu=$2; shift 2 ;;
    --zone) zone=$2; shift 2 ;;
    --project) project=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (the pivotrl command goes after --; see --help)" ;;
  esac
done
(($#)) || die "no pivotrl command given (launch/tpu_pod.sh [options] -- COMMAND ...)"

if [[ -n $tpu ]]; then
  [[ -n $zone ]] || die "--tpu needs --zone"
  remote="cd $(show "$dir") && launch/tpu_pod.sh -- $(show "$@")"
  cmd=(gcloud compute tpus tpu-vm ssh "$tpu" "--zone=$zone" --worker=all "--command=$remote")
  [[ -z $project ]] || cmd+=("--project=$project")
  run_exec "${cmd[@]}"
fi

need_python
run_exec env PIVOTRL_DISTRIBUTED=1 "TPU_STDERR_LOG_LEVEL=${TPU_STDERR_LOG_LEVEL:-1}" \
  "$PY" -m pivotrl_jax.cli "$@"
