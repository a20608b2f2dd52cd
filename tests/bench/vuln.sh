#!/usr/bin/env bash
# Vulnerability assessment benchmark: 10,000 Windows hosts against twelve months of Microsoft
# documents (made from the real January and February 2024 ones in ../shared), against a
# linear scan of every fix in the same run, then end to end through the SQLite store. Not a
# test: it prints what it measured. Goal (issue "Missing Microsoft security updates"): under 2 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --quiet --release -p hygiene-collector --example vuln_bench
