#!/usr/bin/env bash
# The agent's MSI under Wine, as Group Policy or SCCM would deploy it:
#   - its tables are what the MSI must hold (msiinfo): the file, the service (automatic, as
#     LocalSystem, `service run`), its start at install and removal at uninstall, the three
#     public properties and the registry values they fill;
#   - `msiexec /i ... /qn COLLECTOR=... ENROLL_TOKEN=... CA_FINGERPRINT=...` installs it, the
#     service is registered and running, and the agent enrolls against a collector on
#     loopback: its host appears in `hygienectl hosts list`;
#   - a newer MSI over it keeps the certificate and the config the service wrote;
#   - uninstall removes the service and the binary, and leaves C:\ProgramData\Hygiene.
# What Wine cannot do is said where it matters, not skipped: its service manager has no
# delayed automatic start nor failure actions for errors (the agent's log names the calls
# refused, and the test prints them); its msiexec sends the service a stop but, unlike Windows
# Installer, does not wait for it to stop before replacing or removing its files, so the test
# stops the service first, as Windows Installer's StopServices would; and it maps Z: to / as
# a fixed drive, so the agent sweeps the Linux tree while it runs here.
#
#   test-wine.sh OLD.msi NEW.msi      # needs WINEPREFIX (see ../shared/windows-cross/env.sh),
#                                     # target/debug/hygiene-collector and hygienectl
set -euo pipefail
cd "$(dirname "$0")/../.."
old_msi=$(realpath "${1:?usage: test-wine.sh OLD.msi NEW.msi}")
new_msi=$(realpath "${2:?usage: test-wine.sh OLD.msi NEW.msi}")
: "${WINEPREFIX:?set WINEPREFIX (source ../shared/windows-cross/env.sh)}"
bin=${CARGO_TARGET_DIR:-$PWD/target}/debug
work=$(mktemp -d)
collector_pid=
cleanup() {
  wine sc stop HygieneAgent >/dev/null 2>&1 || true
  wine msiexec /x "$new_msi" /qn >/dev/null 2>&1 || true
  [ -z "$collector_pid" ] || kill "$collector_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; else fail "$what"; fi; }
wait_for() {
  local what=$1 seconds=$2; shift 2
  for _ in $(seq $((seconds * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  fail "$what (waited ${seconds}s)"
}
drive_c=$WINEPREFIX/drive_c
# Windows Installer stops a service and waits for it before touching its files; Wine's does
# not wait (see above), so the test does the waiting.
stop_service_as_windows_installer_would() {
  wine sc stop HygieneAgent >/dev/null 2>&1 || true
  wait_for "the service stops" 30 sh -c "wine sc query HygieneAgent | grep -q STOPPED"
}
data=$drive_c/ProgramData/Hygiene

# A clean machine: nothing of an earlier run in this prefix.
wine msiexec /x "$old_msi" /qn >/dev/null 2>&1 || true
wine msiexec /x "$new_msi" /qn >/dev/null 2>&1 || true
rm -rf "$data" "$drive_c/Program Files/Hygiene"

echo "== the MSI's tables (msiinfo)"
check "the service is installed automatic, as LocalSystem, running 'service run'" \
  sh -c "msiinfo export '$old_msi' ServiceInstall | grep -P '^AgentService\tHygieneAgent\t[^\t]*\t16\t2\t1\t.*LocalSystem\t.*service run\tAgentExe'"
check "the service starts at install, stops at install and uninstall, is removed at uninstall" \
  sh -c "msiinfo export '$old_msi' ServiceControl | grep -P '^AgentServiceControl\tHygieneAgent\t163\t'"
check "COLLECTOR, ENROLL_TOKEN and CA_FINGERPRINT pass from the command line" \
  sh -c "msiinfo export '$old_msi' Property | grep -P '^SecureCustomProperties\t.*COLLECTOR;ENROLL_TOKEN;CA_FINGERPRINT'"
for value in Collector EnrollToken CaFingerprint; do
  check "the registry value $value is written" \
    sh -c "msiinfo export '$old_msi' Registry | tr -d '\r' | awk -F '\t' -v v=$value '\$2 == 2 && \$3 ~ /^SOFTWARE.Hygiene.Agent.?\$/ && \$4 == v { found = 1 } END { exit !found }'"
done
check "hygiene-agent.exe goes under Program Files" \
  sh -c "msiinfo export '$old_msi' Directory | grep -P '^INSTALLDIR\tProgramFiles64Folder\tHygiene'"
check "a newer MSI replaces an older one (upgrade code)" \
  sh -c "msiinfo export '$old_msi' Upgrade | grep -q WIX_UPGRADE_DETECTED"

echo "== a collector on loopback"
"$bin/hygiene-collector" pki init --dir "$work/pki" --server-name 127.0.0.1 2>/dev/null
"$bin/hygiene-collector" serve --listen 127.0.0.1:0 --db "sqlite://$work/collector.db" --pki "$work/pki" \
  > "$work/collector.out" 2> "$work/collector.log" &
collector_pid=$!
wait_for "the collector listens" 30 grep -q '^listening on ' "$work/collector.out"
url=https://$(sed -n 's/^listening on //p' "$work/collector.out")
ctl() { "$bin/hygienectl" --collector "$url" --pki "$work/pki" "$@"; }
made=$(ctl enroll create --label wine --uses 1 --format json)
token=$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' <<< "$made")
fingerprint=$(sed -n 's/.*"ca_fingerprint": *"\([^"]*\)".*/\1/p' <<< "$made")

echo "== msiexec /i $(basename "$old_msi") /qn COLLECTOR=$url ENROLL_TOKEN=... CA_FINGERPRINT=..."
wine msiexec /i "$old_msi" /qn "COLLECTOR=$url" "ENROLL_TOKEN=$token" "CA_FINGERPRINT=$fingerprint" \
  || fail "msiexec /i exited $?"
check "hygiene-agent.exe is under Program Files" test -f "$drive_c/Program Files/Hygiene/hygiene-agent.exe"
check "the service is registered" sh -c "wine sc query HygieneAgent | grep -q SERVICE_NAME"
wait_for "the service runs" 60 sh -c "wine sc query HygieneAgent | grep -q RUNNING"
echo "ok: the service runs"
wait_for "the agent enrolls (C:\\ProgramData\\Hygiene\\certs\\agent.pem)" 120 test -s "$data/certs/agent.pem"
echo "ok: the agent enrolled"
host=$(openssl x509 -noout -subject -nameopt multiline -in "$data/certs/agent.pem" | sed -n 's/^ *commonName *= *//p')
wait_for "host $host online in hosts list" 120 sh -c "'$bin/hygienectl' --collector '$url' --pki '$work/pki' hosts show '$host' --format json | grep -q '\"online\": true'"
echo "ok: host $host is online in hosts list"
ctl hosts list
check "the service wrote its config with the collector's address" grep -q "$url" "$data/agent.toml"
settings=$(wine reg query 'HKLM\SOFTWARE\Hygiene\Agent' 2>/dev/null | tr -d '\r')
check "the MSI's settings are in the registry" grep -q "CaFingerprint.*$fingerprint" <<< "$settings"
token_left=$(grep -c -- "$token" <<< "$settings" || true)
check "the used token is gone from the registry" test "$token_left" = 0
check "the service logs to C:\\ProgramData\\Hygiene\\logs" sh -c "ls '$data/logs' | grep -q agent"
serial=$(openssl x509 -noout -serial -in "$data/certs/agent.pem")

echo "== upgrade: msiexec /i $(basename "$new_msi") /qn (no properties)"
stop_service_as_windows_installer_would
wine msiexec /i "$new_msi" /qn || fail "upgrade msiexec exited $?"
check "the certificate is kept" test "$(openssl x509 -noout -serial -in "$data/certs/agent.pem")" = "$serial"
check "the config is kept" grep -q "$url" "$data/agent.toml"
wait_for "the upgraded service runs" 60 sh -c "wine sc query HygieneAgent | grep -q RUNNING"
wait_for "the upgraded agent reconnects" 120 sh -c "grep -h 'connected' '$data'/logs/agent* | wc -l | grep -qv '^1$'"
echo "ok: the upgraded agent reconnected"
# The old service was stopped for the upgrade: it says so, and how long its stop took.
stop_millis=$(grep -h 'service stopped' "$data"/logs/agent* | sed -n '1s/.*millis=\([0-9]*\).*/\1/p')
check "the old service stopped within its 20 s wait hint (took ${stop_millis:-?} ms)" \
  test "${stop_millis:-99999}" -lt 20000

echo "-- what the agent could not set up under Wine (its log):"
grep -h 'WARN.*winservice' "$data"/logs/agent* | sort -u -k4 || echo "(nothing)"

echo "== uninstall"
stop_service_as_windows_installer_would
wine msiexec /x "$new_msi" /qn || fail "msiexec /x exited $?"
check "the service is removed" sh -c "! wine sc query HygieneAgent 2>/dev/null | grep -q SERVICE_NAME"
check "the binary is removed" test ! -e "$drive_c/Program Files/Hygiene/hygiene-agent.exe"
check "the agent's state stays (certificates, spool)" test -s "$data/certs/agent.pem"
echo "MSI under Wine OK"
