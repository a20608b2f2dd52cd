#!/usr/bin/env bash
# The main job, end to end, on the embedded default (README "Quick start"):
# builds the binaries, creates a PKI and an SQLite store under ./demo, starts the collector,
# runs an agent over real mTLS against a demo directory holding EICAR (written here, at run
# time) and a file that a signature-base rule matches, starts a fleet sweep and watches it
# finish, then prints the infected-host table and the findings. Exits 0 when the sweep finished
# and the findings arrived, 1 otherwise.
#
#   bash tests/quickstart.sh            # dev profile (shares the test build)
#   PROFILE=release bash tests/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
shared=${HYGIENE_SHARED:-$root/../shared}
work=${HYGIENE_DEMO_DIR:-$root/demo}
profile=${PROFILE:-dev}

echo "== building ($profile)" >&2
cargo build --quiet --profile "$profile" --bins
bin=${CARGO_TARGET_DIR:-$root/target}/$([ "$profile" = dev ] && echo debug || echo "$profile")

rm -rf "$work"
mkdir -p "$work/files/.cache" "$work/files/opt/tools"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== PKI in $work/pki" >&2
"$bin/hygiene-collector" pki init --dir "$work/pki" --server-name 127.0.0.1 --server-name localhost
"$bin/hygiene-collector" pki issue-agent --dir "$work/pki" --host-id demo-host --out "$work/agent-certs"

# The EICAR test file (its published 68-byte string), hidden the way malware likes it; a file
# that signature-base's FVEY_ShadowBroker_strifeworld rule matches; a clean file.
printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' > "$work/files/.cache/eicar.com"
echo 'Running STRIFEWORLD not protected' > "$work/files/opt/tools/strifeworld.log"
echo 'nothing to see here' > "$work/files/readme.txt"
echo "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f;EICAR test file" > "$work/local-iocs.txt"

echo "== collector (SQLite store $work/collector.db)" >&2
"$bin/hygiene-collector" serve --listen 127.0.0.1:0 --db "sqlite://$work/collector.db" --pki "$work/pki" \
  > "$work/collector.out" 2> "$work/collector.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/collector.out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/collector.out")
[ -n "$addr" ] || { echo "collector did not start:" >&2; cat "$work/collector.log" >&2; exit 1; }
echo "collector listening on $addr" >&2

echo "== agent (signature-base rules, signature-base hash IOCs plus a local EICAR hash)" >&2
"$bin/hygiene-agent" run --collector "https://$addr" --cert-dir "$work/agent-certs" --state-dir "$work/agent-state" \
  --root "$work/files" --rules "$shared/corpus/signature-base/yara" \
  --iocs "$shared/corpus/signature-base/iocs/hash-iocs.txt" --iocs "$work/local-iocs.txt" \
  2> "$work/agent.log" &
pids+=($!)
# The agent sends its sweep summary after every finding; wait for the collector to record it.
for _ in $(seq 600); do grep -q 'sweep reported' "$work/collector.log" && break; sleep 0.1; done
grep -q 'sweep reported' "$work/collector.log" || { echo "no sweep reported:" >&2; tail "$work/agent.log" >&2; exit 1; }

ctl=("$bin/hygienectl" --collector "https://$addr" --pki "$work/pki")
# A fleet sweep, as the admin starts one before the holiday: every host, at once (no splay),
# ignoring the agents' caches; then its progress view until it ends.
echo
echo "== fleet sweep: hygienectl sweep start --all --full --splay 0"
sweep=$("${ctl[@]}" sweep start --all --full --splay 0 --format json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
[ -n "$sweep" ] || { echo "sweep start printed no id" >&2; exit 1; }
echo "== hygienectl sweep status $sweep --watch"
timeout 300 "${ctl[@]}" sweep status "$sweep" --watch || true
# Exit code 1 means the sweep found something, which it should here.
state=$({ "${ctl[@]}" sweep status "$sweep" --format json || true; } | sed -n 's/^  "state": *"\([^"]*\)".*/\1/p')
[ "$state" = done ] || { echo "quick start FAILED: sweep $sweep is ${state:-unknown}, not done" >&2; exit 1; }
echo
echo "== infected hosts: hygienectl hosts list --infected"
"${ctl[@]}" hosts list --infected || true
echo
echo "== findings: hygienectl findings list"
"${ctl[@]}" findings list || true
echo
count=$("${ctl[@]}" findings list --host demo-host --format csv | tail -n +2 | grep -c . || true)
if [ "${count:-0}" -ge 3 ]; then
  echo "quick start OK: $count findings on demo-host (logs and store in $work)" >&2
else
  echo "quick start FAILED: expected 3 findings, got ${count:-none}" >&2
  exit 1
fi
