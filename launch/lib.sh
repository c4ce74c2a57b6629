# shellcheck shell=bash
# Sourced by the launch scripts (not run on its own): the project's interpreter, --help from a
# script's opening comment, and commands that --dry-run prints instead of running.
#
# Every command goes through `run` (foreground), `run_bg LOG` (background, output to LOG) or
# `run_exec` (replaces the script). With DRY_RUN=1 they print the command, shell-quoted, one per
# line (`... > LOG 2>&1 &` for background ones), and run nothing. Paths are relative to the
# repository root, where every script starts.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
# The project's environment (`make install`), never the system python.
PY="${PIVOTRL_PYTHON:-.venv/bin/python}"
DRY_RUN=0
BG_PIDS=()

# Prints the opening comment block of the calling script (its usage) without the '#'s.
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() {
  echo "error: $*" >&2
  exit 2
}

# One word as the shell reads it: bare when safe, else in single quotes.
quote() {
  local q="'\\''"
  if [[ $1 =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/$q}"
  fi
}

# The command line of the arguments, each word quoted.
show() {
  local out="" word
  for word in "$@"; do out+="$(quote "$word") "; done
  echo "${out% }"
}

need_python() {
  [[ $DRY_RUN == 1 || -x $PY ]] || die "$PY not found: run \`make install\` (or set PIVOTRL_PYTHON)"
}

run() {
  if [[ $DRY_RUN == 1 ]]; then show "$@"; else "$@"; fi
}

run_exec() {
  if [[ $DRY_RUN == 1 ]]; then
    show "$@"
    exit 0
  fi
  exec "$@"
}

# run_bg LOG CMD...: CMD in the background with its output in LOG; its pid joins BG_PIDS.
run_bg() {
  local log=$1
  shift
  if [[ $DRY_RUN == 1 ]]; then
    echo "$(show "$@") > $(show "$log") 2>&1 &"
  else
    "$@" >"$log" 2>&1 &
    BG_PIDS+=("$!")
  fi
}

# Stops the background commands (on exit, however the script ends).
stop_bg() {
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BG_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}

# wait_healthy URL TIMEOUT_S: until GET URL/health answers 200 (fails after TIMEOUT_S seconds).
wait_healthy() {
  local url=$1 timeout=$2
  if [[ $DRY_RUN == 1 ]]; then
    echo "until curl -sf $(show "$url/health") >/dev/null; do sleep 2; done  # at most ${timeout} s"
    return
  fi
  local deadline=$((SECONDS + timeout))
  until curl -sf "$url/health" >/dev/null; do
    ((SECONDS < deadline)) || die "$url did not become healthy in ${timeout} s"
    sleep 2
  done
}

# The value of --config.model_dir=... among the given arguments (empty when absent).
config_model_dir() {
  local arg
  for arg in "$@"; do
    [[ $arg == --config.model_dir=* ]] && echo "${arg#--config.model_dir=}"
  done
  return 0
}

# A Python tuple of strings for an ml-collections override: ("a","b",)
string_tuple() {
  local out="" item
  for item in "$@"; do out+="\"$item\","; done
  echo "($out)"
}
