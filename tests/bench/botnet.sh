#!/usr/bin/env bash
# Botnet list benchmark: 10,000 hosts × 50 connections against a 100,000-entry list (mixed
# addresses and CIDR ranges), against a linear scan in the same run, then the whole re-check a
# list import sets off through the SQLite store. Not a test: it prints what it measured.
# Goal (issue "Threat intelligence"): matching under 1 second.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --quiet --release -p hygiene-collector --example botnet_bench
