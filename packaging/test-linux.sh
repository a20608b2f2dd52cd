#!/usr/bin/env bash
# Installs, upgrades, removes and purges the packages of packaging/build.sh on this machine, as
# root, and checks what each step must do:
#   - the collector's .deb makes the hygiene user, its PKI and store under /var/lib/hygiene,
#     enables its unit; hygienectl on the machine works with no flags;
#   - the agent's .deb, given a token in the installer's environment, enables its unit and
#     keeps the token for it; the agent enrolls on its first start and its host appears;
#   - an upgrade keeps edited configuration, certificates, store and state;
#   - remove stops and disables, keeps state; purge deletes state and configuration;
#   - the .rpm packages the same with Debian's rpm (install, upgrade, erase; rpm has no purge).
# systemd is not running here (a CI container): the services are started as their installed
# units say (ExecStart, User, EnvironmentFile), and "enabled" is the symlink systemctl makes.
#
#   sudo bash packaging/test-linux.sh      # after: bash packaging/build.sh (twice, see .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
packages=${CARGO_TARGET_DIR:-$PWD/target}/packages
old=${1:?usage: test-linux.sh OLD_VERSION NEW_VERSION}
new=${2:?usage: test-linux.sh OLD_VERSION NEW_VERSION}
[ "$(id -u)" = 0 ] || { echo "test-linux.sh: run as root (it installs packages)" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A failure shows the end of every service log it has, to say why.
fail() {
  echo "FAILED: $*" >&2
  for log in "$work"/*.log; do
    [ -s "$log" ] && { echo "--- ${log##*/} (last lines)" >&2; tail -n 15 "$log" >&2; }
  done
  exit 1
}
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; else fail "$what"; fi; }
enabled() { [ -L "/etc/systemd/system/multi-user.target.wants/$1.service" ]; }
unit_value() { sed -n "s/^$2=//p" "/usr/lib/systemd/system/$1.service" | head -1; }

# Starts a package's service as its unit says; prints the pid.
start_unit() {
  local unit=$1 log=$2 exec user env_file
  exec=$(unit_value "$unit" ExecStart)
  user=$(unit_value "$unit" User)
  env_file=$(unit_value "$unit" EnvironmentFile)
  (
    cd /
    set -a
    # EnvironmentFile=-PATH: optional.
    if [ -n "$env_file" ] && [ -f "${env_file#-}" ]; then . "${env_file#-}"; fi
    set +a
    if [ -n "$user" ]; then
      exec setpriv --reuid "$user" --regid "$user" --init-groups -- $exec
    else
      exec $exec
    fi
  ) > "$log.out" 2> "$log" &
  echo $!
}

wait_for() {
  local what=$1 seconds=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "$what (waited ${seconds}s)"
}

# As systemd stops a unit: SIGTERM, then wait until the process is gone (it is not this
# shell's child: start_unit runs in a command substitution, so `wait` cannot tell).
stop() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  fail "process $1 did not stop within 30 s of SIGTERM"
}

purge_all() {
  dpkg -P hygiene-agent hygiene-collector >/dev/null 2>&1 || true
  if command -v rpm >/dev/null; then rpm -e --nodeps hygiene-agent hygiene-collector >/dev/null 2>&1 || true; fi
  rm -rf /var/lib/hygiene /var/lib/hygiene-agent /etc/hygiene /etc/hygiene-agent
}
purge_all

# The whole path for one package format: $1 deb|rpm.
exercise() {
  local kind=$1 install upgrade
  case $kind in
    deb)
      install() { dpkg -i "$packages/$1_$2_amd64.deb" >> "$work/$kind.log" 2>&1; }
      ;;
    rpm)
      # Debian's rpm installs into the real root only when told; the package's requirements
      # (glibc, shadow-utils) are Debian's packages here, unknown to rpm's database.
      install() { rpm -U --nodeps --force-debian "$packages/$1-$2-1.x86_64.rpm" >> "$work/$kind.log" 2>&1; }
      ;;
  esac
  echo "== $kind: install $old"
  HYGIENE_SERVER_NAMES="127.0.0.1 localhost" install hygiene-collector "$old" \
    || { cat "$work/$kind.log" >&2; fail "collector $kind installs"; }
  check "the hygiene system user exists" sh -c "getent passwd hygiene >/dev/null"
  check "the collector's PKI is made and owned by hygiene" \
    test "$(stat -c %U /var/lib/hygiene/pki/ca.key)" = hygiene
  check "hygiene-collector.service is enabled" enabled hygiene-collector
  local collector
  collector=$(start_unit hygiene-collector "$work/collector.log")
  pids+=("$collector")
  wait_for "the collector listens" 30 grep -q '^listening on ' "$work/collector.log.out"
  local token fingerprint
  made=$(hygienectl enroll create --label "ci $kind" --uses 1 --format json) \
    || fail "hygienectl enroll create with the installed /etc/hygiene/hygienectl.toml"
  token=$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' <<< "$made")
  fingerprint=$(sed -n 's/.*"ca_fingerprint": *"\([^"]*\)".*/\1/p' <<< "$made")

  HYGIENE_COLLECTOR=https://127.0.0.1:50051 HYGIENE_ENROLL_TOKEN=$token \
    HYGIENE_CA_FINGERPRINT=$fingerprint install hygiene-agent "$old" \
    || { cat "$work/$kind.log" >&2; fail "agent $kind installs"; }
  check "hygiene-agent.service is enabled" enabled hygiene-agent
  check "the token is kept for the service, readable by root only" \
    test "$(stat -c %a /etc/hygiene-agent/enroll.env)" = 600
  check "the token is the one given" grep -qx "HYGIENE_ENROLL_TOKEN=$token" /etc/hygiene-agent/enroll.env
  local agent host
  agent=$(start_unit hygiene-agent "$work/agent.log")
  pids+=("$agent")
  wait_for "the agent enrolls" 60 test -s /var/lib/hygiene-agent/certs/agent.pem
  host=$(openssl x509 -noout -subject -nameopt multiline -in /var/lib/hygiene-agent/certs/agent.pem \
    | sed -n 's/^ *commonName *= *//p')
  wait_for "host $host appears online in hosts list" 60 \
    sh -c "hygienectl hosts show '$host' --format json | grep -q '\"online\": true'"
  echo "ok: the agent installed with a token enrolled as $host and is online"
  stop "$agent"

  echo "== $kind: upgrade to $new"
  echo "# edited by the admin" >> /etc/hygiene-agent/agent.toml
  echo "# edited by the admin" >> /etc/hygiene/collector.toml
  local cert_sum ca_sum
  cert_sum=$(sha256sum /var/lib/hygiene-agent/certs/agent.pem)
  ca_sum=$(sha256sum /var/lib/hygiene/pki/ca.pem)
  stop "$collector"
  install hygiene-collector "$new" || { cat "$work/$kind.log" >&2; fail "collector upgrade"; }
  HYGIENE_ENROLL_TOKEN= install hygiene-agent "$new" || { cat "$work/$kind.log" >&2; fail "agent upgrade"; }
  check "the agent's edited config is kept" grep -q 'edited by the admin' /etc/hygiene-agent/agent.toml
  check "the collector's edited config is kept" grep -q 'edited by the admin' /etc/hygiene/collector.toml
  check "the agent's certificate is kept" sh -c "echo '$cert_sum' | sha256sum -c --quiet"
  check "the collector's CA is kept" sh -c "echo '$ca_sum' | sha256sum -c --quiet"
  check "the token file is kept" grep -q "HYGIENE_ENROLL_TOKEN=$token" /etc/hygiene-agent/enroll.env
  collector=$(start_unit hygiene-collector "$work/collector2.log")
  pids+=("$collector")
  wait_for "the upgraded collector listens" 30 grep -q '^listening on ' "$work/collector2.log.out"
  check "the store kept the host" sh -c "hygienectl hosts list --format csv | grep -q '^$host,'"
  agent=$(start_unit hygiene-agent "$work/agent2.log")
  pids+=("$agent")
  wait_for "the upgraded agent reconnects with its certificate" 60 grep -q 'connected' "$work/agent2.log"
  stop "$agent"
  stop "$collector"

  echo "== $kind: remove"
  case $kind in
    deb) dpkg -r hygiene-agent hygiene-collector >> "$work/$kind.log" 2>&1 ;;
    rpm) rpm -e --nodeps hygiene-agent hygiene-collector >> "$work/$kind.log" 2>&1 ;;
  esac
  check "the binaries are gone" test ! -e /usr/bin/hygiene-agent -a ! -e /usr/bin/hygienectl
  check "the units are disabled" sh -c "! test -L /etc/systemd/system/multi-user.target.wants/hygiene-agent.service"
  check "the agent's state stays" test -s /var/lib/hygiene-agent/certs/agent.pem
  check "the collector's store stays" test -s /var/lib/hygiene/collector.db
  if [ "$kind" = deb ]; then
    echo "== deb: purge"
    dpkg -P hygiene-agent hygiene-collector >> "$work/$kind.log" 2>&1
    check "purge deletes the agent's state and config" test ! -e /var/lib/hygiene-agent -a ! -e /etc/hygiene-agent
    check "purge deletes the collector's store, PKI and config" test ! -e /var/lib/hygiene -a ! -e /etc/hygiene
  fi
  purge_all
}

exercise deb
if command -v rpm >/dev/null; then
  exercise rpm
else
  echo "rpm not installed: the .rpm packages are not exercised" >&2
fi
echo "packages OK: install, enrollment at first start, upgrade, remove and purge"
