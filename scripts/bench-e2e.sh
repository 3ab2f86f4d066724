#!/usr/bin/env bash
# End-to-end throughput through a local Kafka (see benches/end_to_end.rs for the knobs).
source "$(dirname "$0")/common.sh"
bash "$REPO_ROOT/scripts/setup.sh"
port="${TIDAL_BENCH_PORT:-19192}"
bash "$REPO_ROOT/scripts/kafka.sh" start "$port" >/dev/null
trap 'bash "$REPO_ROOT/scripts/kafka.sh" stop "$port"' EXIT
export TIDAL_BENCH_BROKERS="127.0.0.1:$port"
cd "$REPO_ROOT" && cargo bench --locked --bench end_to_end
