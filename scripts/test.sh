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
export TIDAL_HADOLINT="$TIDAL_VENV/bin/hadolint" TIDAL_DEPLOY_CHECK="$TIDAL_HOME/bin/deploy-check"
cd "$REPO_ROOT"
# --include-ignored: the broker- and model-backed tests are #[ignore]d for a bare `cargo test`.
# One test at a time: end-to-end tests start processors that each want a core.
cargo test --release --locked -- --include-ignored --test-threads 1
