#!/usr/bin/env bash
# The benchmark, set-up included: tidal, Kafka and the models (scripts/setup.sh), the baselines
# (scripts/setup-bench.sh: Python packages, the Kafka Streams application), a local Kafka on a
# spare port, then `tidal bench`.
# Arguments go to `tidal bench` (see `tidal bench --help`), e.g. scripts/bench.sh --duration 60s
source "$(dirname "$0")/common.sh"
bash "$REPO_ROOT/scripts/setup.sh"
bash "$REPO_ROOT/scripts/setup-bench.sh"
start_local_kafka "${TIDAL_BENCH_PORT:-19292}"
cd "$REPO_ROOT"
# Report and chart go to target/bench (or $TIDAL_BENCH_OUT, or --out DIR).
"$REPO_ROOT/target/release/tidal" bench --brokers "$LOCAL_KAFKA" --python "$TIDAL_VENV/bin/python" \
  --kstreams "$REPO_ROOT/benches/baselines/kstreams" "$@"
