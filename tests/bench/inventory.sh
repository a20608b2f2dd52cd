#!/usr/bin/env bash
# Inventory benchmark: the collector's time to take a large host's inventory and socket list
# (5,000 packages, 2,000 sockets), from the encoded message to the committed SQLite write.
# Not a test: it prints what it measured. Goal (issue "Patch levels and connections"): well
# under a second of collector time per report.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --quiet --release -p hygiene-collector --example inventory_bench
