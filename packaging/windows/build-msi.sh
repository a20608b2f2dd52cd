#!/usr/bin/env bash
# The agent's MSI with wixl: build-msi.sh VERSION OUT_DIR. The Windows binary is
# HYGIENE_WINDOWS_EXE, or else built here with `cargo build --release --target
# x86_64-pc-windows-gnu` (which needs that target's standard library and mingw-w64; see
# ../shared/windows-cross/ for one way).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=${1:?usage: build-msi.sh VERSION OUT_DIR}
out=${2:?usage: build-msi.sh VERSION OUT_DIR}
exe=${HYGIENE_WINDOWS_EXE:-}
if [ -z "$exe" ]; then
  target=${CARGO_TARGET_DIR:-$PWD/target}
  cargo build --quiet --release --target x86_64-pc-windows-gnu -p hygiene-agent --bin hygiene-agent \
    || { echo "packaging: cannot build the Windows agent here; set HYGIENE_WINDOWS_EXE" >&2; exit 2; }
  exe=$target/x86_64-pc-windows-gnu/release/hygiene-agent.exe
fi
[ -f "$exe" ] || { echo "packaging: $exe: no such file" >&2; exit 2; }
# An MSI's ProductVersion is numeric: 0.1.0~rc1 or 0.1.0-2 keep their numeric head.
msi_version=$(grep -oE '^[0-9]+(\.[0-9]+){0,3}' <<< "$version")
stripped=$(mktemp -d)
trap 'rm -rf "$stripped"' EXIT
x86_64-w64-mingw32-strip --strip-debug -o "$stripped/hygiene-agent.exe" "$exe" 2>/dev/null \
  || cp "$exe" "$stripped/hygiene-agent.exe"
# wixl finds a File's Source relative to the directory it runs in.
cp packaging/windows/hygiene-agent.wxs "$stripped/"
mkdir -p "$out"
out=$(cd "$out" && pwd)
(cd "$stripped" && wixl -a x64 -D "Version=$msi_version" -D "Exe=hygiene-agent.exe" \
  -o "$out/hygiene-agent-$version-x64.msi" hygiene-agent.wxs)
# The three properties must reach the per-machine install from the command line: wixl has
# no Secure attribute, so they join the list it writes for its upgrade detection.
msibuild "$out/hygiene-agent-$version-x64.msi" -q \
  "UPDATE Property SET Value = 'WIX_DOWNGRADE_DETECTED;WIX_UPGRADE_DETECTED;COLLECTOR;ENROLL_TOKEN;CA_FINGERPRINT' WHERE Property = 'SecureCustomProperties'"
echo "$out/hygiene-agent-$version-x64.msi"
