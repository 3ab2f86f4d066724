#!/usr/bin/env bash
# End-to-end throughput through a local Kafka (see benches/end_to_end.rs for the knobs).
source "$(dirname "$0")/common.sh"
bash "$REPO_ROOT/scripts/setup.sh"
start_local_kafka "${TIDAL_BENCH_PORT:-19192}"
export TIDAL_BENCH_BROKERS="$LOCAL_KAFKA"
cd "$REPO_ROOT" && cargo bench --locked --bench end_to_end
