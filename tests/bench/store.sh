#!/usr/bin/env bash
# Store benchmark: findings ingested per second on SQLite and PostgreSQL, then the hosts list
# and the progress counts with 10,000 hosts and 1,000,000 findings (goal: under 300 ms each),
# through the services the admin API calls. Not a test: it prints what it measured.
# PostgreSQL: HYGIENE_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432); a database
# is made for the run and dropped after it. Arguments: [HOSTS] [FINDINGS].
set -euo pipefail
cd "$(dirname "$0")/../.."
export HYGIENE_TEST_POSTGRES=${HYGIENE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432}
cargo run --quiet --release -p hygiene-collector --example store_bench -- "$@"
