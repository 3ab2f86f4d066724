#!/usr/bin/env bash
# Does all set-up, starts a local Kafka on a spare port, runs the whole test suite (unit,
# property, model-reference and end-to-end tests against the real broker), stops Kafka.
source "$(dirname "$0")/common.sh"
bash "$REPO_ROOT/scripts/setup.sh"
bash "$REPO_ROOT/scripts/setup-bench.sh"
bash "$REPO_ROOT/scripts/setup-checks.sh"
start_local_kafka "${TIDAL_TEST_PORT:-19092}"
export TIDAL_TEST_BROKERS="$LOCAL_KAFKA"
export TIDAL_BENCH_PYTHON="$TIDAL_VENV/bin/python"
export TIDAL_BENCH_KSTREAMS="$REPO_ROOT/benches/baselines/kstreams"
export TIDAL_HADOLINT="$TIDAL_VENV/bin/hadolint" TIDAL_DEPLOY_CHECK="$TIDAL_HOME/bin/deploy-check"
cd "$REPO_ROOT"
# --features broker-tests: the tests that need the broker, the models and the check tools are
# compiled only with it, so that a bare `cargo test` runs the unit and property tests alone.
# One test at a time: end-to-end tests start processors that each want a core.
cargo test --release --locked --features broker-tests -- --test-threads 1
