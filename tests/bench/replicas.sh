#!/usr/bin/env bash
# Replicas benchmark (issue "One collector design for one host or a whole province"): AGENTS
# simulated agents (default 10,000) on two collector replicas sharing one PostgreSQL database,
# half on each (hygiene-loadgen, real mTLS on loopback). Prints each replica's RSS, its CPU
# time per heartbeat, how long a sweep ordered through one replica takes to reach every agent
# (half of them connected to the other), and how long `hosts list` and `progress` take. Not a
# test: it prints what it measured.
#
#   bash tests/bench/replicas.sh     # AGENTS, HEARTBEAT (s, default 10), WINDOW (s, default 60),
#                                    # ROUNDS (default 3), PG (default postgres://postgres@127.0.0.1:5432),
#                                    # PROFILE (default release)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
agents=${AGENTS:-10000}
heartbeat=${HEARTBEAT:-10}
window=${WINDOW:-60}
rounds=${ROUNDS:-3}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
work=${BENCH_DIR:-/tmp/hygiene-replicas-bench}
db=hygiene_bench_replicas

# PROFILE=debug: a quick check of the script itself with the test build (figures meaningless).
profile=${PROFILE:-release}
echo "== building $profile binaries" >&2
if [ "$profile" = release ]; then
  cargo build --quiet --release -p hygiene-collector -p hygienectl -p hygiene-tests --bins
else
  cargo build --quiet -p hygiene-collector -p hygienectl -p hygiene-tests --bins
fi
bin=${CARGO_TARGET_DIR:-$root/target}/$([ "$profile" = release ] && echo release || echo debug)

ulimit -n "$(ulimit -Hn)"
rm -rf "$work" && mkdir -p "$work"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
PGOPTIONS=--client-min-messages=warning psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null

"$bin/hygiene-collector" pki init --dir "$work/pki" --server-name 127.0.0.1 2>/dev/null
start_replica() { # NAME
  "$bin/hygiene-collector" serve --listen 127.0.0.1:0 --db "$pg/$db" --pki "$work/pki" \
    > "$work/$1.out" 2> "$work/$1.log" &
  pids+=($!)
  eval "pid_$1=$!"
  for _ in $(seq 100); do grep -q '^listening on ' "$work/$1.out" && break; sleep 0.1; done
  eval "addr_$1=$(sed -n 's/^listening on //p' "$work/$1.out")"
}
start_replica a
start_replica b
[ -n "$addr_a" ] && [ -n "$addr_b" ] || { echo "replicas did not start" >&2; cat "$work"/*.log >&2; exit 1; }
ctl=("$bin/hygienectl" --collector "https://$addr_a" --pki "$work/pki")

half=$((agents / 2))
echo "== $agents simulated agents, $half on each replica" >&2
started=$(date +%s%N)
"$bin/hygiene-loadgen" --collector "https://$addr_a" --pki "$work/pki" --agents "$half" \
  --heartbeat-seconds "$heartbeat" > "$work/loadgen-a.out" 2> "$work/loadgen-a.log" &
pids+=($!)
"$bin/hygiene-loadgen" --collector "https://$addr_b" --pki "$work/pki" --agents $((agents - half)) \
  --first $((half + 1)) --heartbeat-seconds "$heartbeat" > "$work/loadgen-b.out" 2> "$work/loadgen-b.log" &
pids+=($!)
online=0
for _ in $(seq 900); do
  online=$("${ctl[@]}" hosts list --format csv | awk -F, 'NR > 1 && $0 ~ /,true,/' | wc -l)
  [ "$online" -ge "$agents" ] && break
  sleep 1
done
[ "$online" -ge "$agents" ] || { echo "only $online of $agents agents online" >&2; tail "$work"/loadgen-*.log >&2; exit 1; }
online_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "all $agents online (as replica A sees them) after $online_ms ms" >&2

rss() { awk '/^VmRSS/ { print int($2 / 1024) }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
a0=$(cpu_ticks "$pid_a") b0=$(cpu_ticks "$pid_b")
echo "== $window s of heartbeats every $heartbeat s" >&2
sleep "$window"
a1=$(cpu_ticks "$pid_a") b1=$(cpu_ticks "$pid_b")
beats_each=$(( half * window / heartbeat ))
cpu_per_beat() { awk -v t="$1" -v hz="$tick" -v n="$beats_each" 'BEGIN { printf "%.3f", t * 1000 / hz / n }'; }
cpu_a=$(cpu_per_beat $((a1 - a0))) cpu_b=$(cpu_per_beat $((b1 - b0)))
echo "CPU over the window: replica A (pid $pid_a) $((a1 - a0)) ticks, B (pid $pid_b) $((b1 - b0)) ticks of 1/$tick s" >&2
rss_a=$(rss "$pid_a") rss_b=$(rss "$pid_b")

reach=()
for round in $(seq "$rounds"); do
  t0=$(date +%s%3N)
  id=$("${ctl[@]}" sweep start --all --splay 0 --format json 2>/dev/null | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
  last=0
  for side in a b; do
    line=''
    for _ in $(seq 600); do
      line=$(grep "\"$id\"" "$work/loadgen-$side.out" || true)
      [ -n "$line" ] && break
      sleep 0.1
    done
    [ -n "$line" ] || { echo "sweep $id did not reach the agents on replica $side" >&2; exit 1; }
    side_last=$(echo "$line" | sed -n 's/.*"last_ms":\([0-9]*\).*/\1/p')
    [ "$side_last" -gt "$last" ] && last=$side_last
  done
  reach+=($((last - t0)))
  echo "   round $round: sweep $id ordered through A reached all $agents agents (half on B) in $((last - t0)) ms" >&2
  for _ in $(seq 600); do
    "${ctl[@]}" sweep status "$id" --format json | grep -q '^  "state": "done"' && break
    sleep 0.5
  done
done

timed() { # prints the best and worst of ROUNDS runs of a command, ms
  local t=()
  for _ in $(seq "$rounds"); do
    local s; s=$(date +%s%N)
    "$@" > /dev/null
    t+=($(( ($(date +%s%N) - s) / 1000000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n '1p;$p' | paste -sd' '
}
# Where each order's time went, as the replicas logged it: A's storing, publishing and own
# deliveries; B's delivery after the publication.
echo "== the replicas' own account of each order" >&2
grep -h 'sweep started' "$work/a.log" "$work/b.log" | sed 's/^.*INFO //' >&2 || true
read -r hosts_best hosts_worst <<< "$(timed "${ctl[@]}" hosts list --format json)"
read -r progress_best progress_worst <<< "$(timed "${ctl[@]}" progress --format json)"
best=$(printf '%s\n' "${reach[@]}" | sort -n | head -1)
worst=$(printf '%s\n' "${reach[@]}" | sort -n | tail -1)
cat <<TABLE

Hygiene replicas benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, $agents simulated agents on loopback mTLS, 2 replicas + PostgreSQL $(psql "$pg/postgres" -Atc 'SHOW server_version'), $profile build)

| measurement | figure | goal |
|---|---|---|
| all agents connected (as replica A lists them), ms | $online_ms | |
| RSS per replica with $half agents each, MiB | A $rss_a, B $rss_b | |
| CPU per heartbeat, ms (over $window s, a heartbeat every $heartbeat s per agent) | A $cpu_a, B $cpu_b | |
| sweep ordered through A to the last of $agents agents, ms (rounds: ${reach[*]}) | best $best, worst $worst | < 2000 |
| \`hygienectl hosts list --format json\` ($agents hosts), ms | best $hosts_best, worst $hosts_worst | < 300 |
| \`hygienectl progress\` ($agents hosts), ms | best $progress_best, worst $progress_worst | < 300 |
TABLE
