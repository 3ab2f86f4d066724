# Shared settings for tidal's scripts. Sourced, not run.
# Everything installed goes under TIDAL_HOME (outside the repository) and is reused when present.
set -euo pipefail
# Versions and the default install folder: one file, compiled into tidal too.
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"
TIDAL_HOME="${TIDAL_HOME:-$HOME/$TIDAL_HOME_DEFAULT}"
KAFKA_LIBS="$TIDAL_HOME/kafka-$KAFKA_VERSION/libs"
ORT_DYLIB="$TIDAL_HOME/onnxruntime-$ORT_VERSION/libonnxruntime.so"
TIDAL_VENV="$TIDAL_HOME/venv"
TIDAL_MODEL_DIR="${TIDAL_MODEL_DIR:-$TIDAL_HOME/models}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TIDAL_HOME TIDAL_MODEL_DIR
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ORT_DYLIB}"

log() { printf '\033[1;34m[tidal]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[tidal] error:\033[0m %s\n' "$*" >&2; exit 1; }

# start_local_kafka PORT: starts the local broker on PORT, stops it when the calling script exits,
# and exports its address as LOCAL_KAFKA.
start_local_kafka() {
  local port="$1"
  bash "$REPO_ROOT/scripts/kafka.sh" start "$port" >/dev/null
  # shellcheck disable=SC2064  # expand $port now
  trap "bash '$REPO_ROOT/scripts/kafka.sh' stop '$port'" EXIT
  export LOCAL_KAFKA="127.0.0.1:$port"
}
