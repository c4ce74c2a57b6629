#!/usr/bin/env bash
# One multi-GPU host: optional SGLang rollout servers, then one trainer process (one JAX process
# driving its GPUs; the mesh spans them).
#
#   launch/gpu_host.sh [options] -- COMMAND [ARGS...]
#
#   --gpus LIST             the host's GPUs, e.g. 0,1,2,3 (default: those nvidia-smi lists)
#   --servers N             SGLang servers to start (default 0: rollouts in-process, JAX engine)
#   --server-gpus LIST      one GPU per server (default: the first N of --gpus); the trainer gets
#                           the other GPUs
#   --colocate              the servers share the trainer's GPUs: the trainer gets every GPU of
#                           --gpus, each side a share of their memory
#   --port P                server i listens on 127.0.0.1:P+i (default 30000)
#   --mem-fraction F        each server's --mem-fraction-static (default 0.8; colocated 0.3)
#   --trainer-mem-fraction F  XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.85; colocated 0.6)
#   --model-path DIR        what the servers load (default: the command's --config.model_dir)
#   --sglang-python PY      the interpreter with sglang installed (default: python)
#   --health-timeout S      seconds to wait for each server's /health (default 600)
#   --log-dir DIR           the servers' logs, sglang-PORT.log (default logs)
#   --dry-run               print the commands instead of running them
#   --help                  print this text
#
# With servers, the trainer gets --config.engine.name=sglang and --config.engine.urls (every
# server); it refits them from disk after each update. The servers stop when the trainer ends.
# The trainer runs with the project's .venv/bin/python (PIVOTRL_PYTHON overrides).
#
# Examples:
#   launch/gpu_host.sh -- train --config=configs/train.py --config.mesh_shape='(1,-1,1,1)' ...
#   launch/gpu_host.sh --gpus 0,1,2,3,4,5,6,7 --servers 2 -- train --config.model_dir=runs/base ...
#   launch/gpu_host.sh --gpus 0,1 --servers 2 --colocate -- profile --config.model_dir=runs/base ...
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

gpus="" servers=0 server_gpus="" colocate=0 port=30000 mem_fraction="" trainer_mem=""
model_path="" sglang_python="python" health_timeout=600 log_dir=logs
while (($#)); do
  case $1 in
    --gpus) gpus=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --server-gpus) server_gpus=$2; shift 2 ;;
    --colocate) colocate=1; shift ;;
    --port) port=$2; shift 2 ;;
    --mem-fraction) mem_fraction=$2; shift 2 ;;
    --trainer-mem-fraction) trainer_mem=$2; shift 2 ;;
    --model-path) model_path=$2; shift 2 ;;
    --sglang-python) sglang_python=$2; shift 2 ;;
    --health-timeout) health_timeout=$2; shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (the pivotrl command goes after --; see --help)" ;;
  esac
done
(($#)) || die "no pivotrl command given (launch/gpu_host.sh [options] -- COMMAND ...)"
[[ $servers =~ ^[0-9]+$ ]] || die "--servers must be a number, got $servers"

if [[ -z $gpus ]]; then
  command -v nvidia-smi >/dev/null || die "no nvidia-smi here: name the GPUs with --gpus"
  gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd, -)
fi
IFS=, read -r -a all_gpus <<<"$gpus"
if [[ -n $server_gpus ]]; then
  IFS=, read -r -a serving <<<"$server_gpus"
  ((${#serving[@]} == servers)) || die "--server-gpus names ${#serving[@]} GPUs for $servers servers"
else
  serving=("${all_gpus[@]:0:servers}")
  ((${#serving[@]} == servers)) || die "$servers servers need $servers GPUs; --gpus has ${#all_gpus[@]}"
fi
training=()
for g in "${all_gpus[@]}"; do
  if ((colocate)) || [[ " ${serving[*]} " != *" $g "* ]]; then training+=("$g"); fi
done
((${#training[@]})) || die "no GPU left for the trainer (use --colocate to share them)"
if ((colocate)); then
  mem_fraction=${mem_fraction:-0.3} trainer_mem=${trainer_mem:-0.6}
else
  mem_fraction=${mem_fraction:-0.8} trainer_mem=${trainer_mem:-0.85}
fi

need_python
extra=()
if ((servers)); then
  model_path=${model_path:-$(config_model_dir "$@")}
  [[ -n $model_path ]] || die "the servers need --model-path (or --config.model_dir in the command)"
  trap stop_bg EXIT
  run mkdir -p "$log_dir"
  urls=()
  for i in "${!serving[@]}"; do
    p=$((port + i))
    run_bg "$log_dir/sglang-$p.log" env "CUDA_VISIBLE_DEVICES=${serving[i]}" launch/sglang_server.sh \
      --model-path "$model_path" --port "$p" --python "$sglang_python" \
      -- --mem-fraction-static "$mem_fraction"
    urls+=("http://127.0.0.1:$p")
  done
  for url in "${urls[@]}"; do wait_healthy "$url" "$health_timeout"; done
  extra=(--config.engine.name=sglang "--config.engine.urls=$(string_tuple "${urls[@]}")")
fi

trainer=(env "CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${training[*]}")"
  "XLA_PYTHON_CLIENT_MEM_FRACTION=$trainer_mem" "NCCL_DEBUG=${NCCL_DEBUG:-WARN}"
  "XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_enable_latency_hiding_scheduler=true"
  "$PY" -m pivotrl_jax.cli "$@" "${extra[@]}")
if ((servers)); then
  run "${trainer[@]}"  # not exec: the EXIT trap stops the servers afterwards
else
  run_exec "${trainer[@]}"
fi
