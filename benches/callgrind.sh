#!/usr/bin/env bash
# Instructions per call of the in-process paths, counted by `valgrind --tool=callgrind`.
#
#   benches/callgrind.sh                 # every path
#   benches/callgrind.sh key memory-hit  # some paths (also redis-get, redis-hit, redis-miss and
#                                        # their -async forms, with IDEMPOTENCY_REDIS_URL set)
#   N=20000 benches/callgrind.sh         # iterations (default 5000)
#   ANNOTATE=1 benches/callgrind.sh memory-hit   # also the top functions of the 2N run
#
# Each path runs in the bench binary (`overhead --callgrind <path> <n>`, see
# benches/overhead/callgrind.rs) at N and at 2N iterations; the difference of the two totals
# divided by N is the cost of one call, with start-up, set-up and first-call costs cancelled.
# Instruction counts do not depend on the machine's load, so they are the figure to compare
# across commits (wall-clock times on a shared machine are not). Output, one line per path:
#
#   callgrind <path> <instructions per call> <ratio to floor> <instructions per call without SHA-256>
#
# where the ratio divides by the `floor` path (postcard + SHA-256 of the same argument; compare
# `file-hit` with `file-read` instead, and count their system calls with strace), and the
# last column leaves out SHA-256's compression function. Valgrind hides CPU extensions it cannot
# emulate (SHA-NI among them), so SHA-256 runs its portable code here, at about 3,400
# instructions per 64-byte block: it weighs far more in these counts than in time on a machine
# with SHA-NI (about 22 ns per block). The last column is the part a change to our code can move.
# System calls count as one instruction each (their time in the kernel is not seen).
set -euo pipefail

cd "$(dirname "$0")/.."
N="${N:-5000}"
command -v valgrind >/dev/null || {
  echo "valgrind is not installed (apt-get install -y valgrind)" >&2
  exit 1
}

# Build the bench binary and find it.
bin="$(cargo bench --bench overhead --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "overhead" and .executable != null) | .executable' |
  tail -n 1)"
if [[ -z "$bin" || ! -x "$bin" ]]; then
  echo "could not build the bench binary (cargo bench --bench overhead --no-run)" >&2
  exit 1
fi

paths=("$@")
if [[ ${#paths[@]} -eq 0 ]]; then
  paths=(floor key memory-hit memory-miss manual-hit macro-hit file-read file-hit)
fi
# The floor is needed for the ratios.
if [[ " ${paths[*]} " != *" floor "* ]]; then
  paths=(floor "${paths[@]}")
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

total() { # <path> <iterations> -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" "$bin" --callgrind "$1" "$2" \
    >/dev/null 2>"$out/$1.$2.log" || {
    cat "$out/$1.$2.log" >&2
    return 1
  }
  local all sha
  all="$(awk '/^(summary|totals):/ { print $2; exit }' "$out/$1.$2")"
  sha="$(callgrind_annotate --inclusive=no --threshold=100 "$out/$1.$2" 2>/dev/null |
    awk '/sha2::sha256::soft/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')"
  echo "$all $sha"
}

floor=""
for p in "${paths[@]}"; do
  # `read <<<"$(...)"` would swallow a failed run (an unknown path): stop on it instead.
  first="$(total "$p" "$N")" || exit 1
  second="$(total "$p" "$((2 * N))")" || exit 1
  read -r a a_sha <<<"$first"
  read -r b b_sha <<<"$second"
  per=$(((b - a) / N))
  rest=$(((b - b_sha - a + a_sha) / N))
  if [[ "$p" == floor ]]; then
    floor="$per"
  fi
  echo "callgrind $p $per $(awk -v x="$per" -v f="$floor" 'BEGIN { printf "%.2f", x / f }') $rest"
  if [[ -n "${ANNOTATE:-}" ]]; then
    callgrind_annotate --inclusive=no "$out/$p.$((2 * N))" 2>/dev/null | sed -n '1,60p' | grep -v '^$' | tail -n +8 | head -n 40
  fi
done
