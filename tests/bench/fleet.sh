#!/usr/bin/env bash
# Fleet benchmark (issue "Fleet sweeps on demand"): how long a sweep command takes to reach
# 1,000 connected agents. A real collector (SQLite) and hygiene-loadgen's simulated agents, each
# on its own mTLS stream on loopback; the time runs from just before `hygienectl sweep start`
# to the moment the last simulated agent has the order. Not a test: it prints what it measured.
#
#   bash tests/bench/fleet.sh            # AGENTS (default 1000), ROUNDS (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
agents=${AGENTS:-1000}
rounds=${ROUNDS:-3}
work=${BENCH_DIR:-/tmp/hygiene-fleet-bench}

echo "== building release binaries" >&2
cargo build --quiet --release -p hygiene-collector -p hygienectl -p hygiene-tests --bins
bin=${CARGO_TARGET_DIR:-$root/target}/release

# Each agent is one connection: two descriptors on this machine (both ends), past the usual
# soft limit of 1,024.
ulimit -n "$(ulimit -Hn)"
rm -rf "$work" && mkdir -p "$work"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$bin/hygiene-collector" pki init --dir "$work/pki" --server-name 127.0.0.1 2>/dev/null
"$bin/hygiene-collector" serve --listen 127.0.0.1:0 --db "sqlite://$work/collector.db" --pki "$work/pki" \
  > "$work/collector.out" 2> "$work/collector.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/collector.out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/collector.out")
[ -n "$addr" ] || { echo "collector did not start" >&2; cat "$work/collector.log" >&2; exit 1; }
ctl=("$bin/hygienectl" --collector "https://$addr" --pki "$work/pki")

echo "== $agents simulated agents" >&2
started=$(date +%s%N)
"$bin/hygiene-loadgen" --collector "https://$addr" --pki "$work/pki" --agents "$agents" \
  > "$work/loadgen.out" 2> "$work/loadgen.log" &
pids+=($!)
online=0
for _ in $(seq 600); do
  online=$("${ctl[@]}" hosts list --format csv | awk -F, 'NR > 1 && $0 ~ /,true,/' | wc -l)
  [ "$online" -ge "$agents" ] && break
  sleep 0.5
done
[ "$online" -ge "$agents" ] || { echo "only $online of $agents agents online" >&2; tail "$work/loadgen.log" >&2; exit 1; }
echo "all $agents online after $(( ($(date +%s%N) - started) / 1000000 )) ms" >&2

reach=() call=()
for round in $(seq "$rounds"); do
  t0=$(date +%s%3N)
  id=$("${ctl[@]}" sweep start --all --splay 0 --format json 2>/dev/null | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
  t1=$(date +%s%3N)
  line=''
  for _ in $(seq 300); do
    line=$(grep "\"$id\"" "$work/loadgen.out" || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || { echo "sweep $id did not reach every agent" >&2; exit 1; }
  last=$(echo "$line" | sed -n 's/.*"last_ms":\([0-9]*\).*/\1/p')
  reach+=($((last - t0))) call+=($((t1 - t0)))
  echo "   round $round: sweep $id reached $agents agents $((last - t0)) ms after the command started (the command itself: $((t1 - t0)) ms)" >&2
  # Let the simulated agents report back before the next round.
  for _ in $(seq 300); do
    "${ctl[@]}" sweep status "$id" --format json | grep -q '^  "state": "done"' && break
    sleep 0.2
  done
done

best=$(printf '%s\n' "${reach[@]}" | sort -n | head -1)
worst=$(printf '%s\n' "${reach[@]}" | sort -n | tail -1)
cat <<TABLE

Hygiene fleet benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, $agents simulated agents on loopback mTLS, SQLite store)

| measurement | figure | goal |
|---|---|---|
| sweep command to the last of $agents agents, ms (rounds: ${reach[*]}) | best $best, worst $worst | < 1000 |
| the \`hygienectl sweep start\` call itself, ms (rounds: ${call[*]}) | | |
TABLE
