#!/usr/bin/env bash
# The Python baselines' packages for `tidal bench`, in the set-up venv (idempotent). Run after
# scripts/setup.sh (which creates the venv with onnxruntime and tokenizers).
source "$(dirname "$0")/common.sh"
marker="$TIDAL_VENV/.bench-complete-1"
if [ -f "$marker" ]; then log "baseline packages present ($TIDAL_VENV)"; exit 0; fi
[ -x "$TIDAL_VENV/bin/pip" ] || die "the set-up venv is missing: run scripts/setup.sh first"
log "installing the Python baselines' packages (confluent-kafka, flask, gunicorn)"
"$TIDAL_VENV/bin/pip" install -q --disable-pip-version-check \
  confluent-kafka==2.16.1 flask==3.1.3 gunicorn==27.0.1 "onnxruntime==$ORT_VERSION" \
  || die "pip could not install the baselines' packages (is PyPI reachable?)"
touch "$marker"
