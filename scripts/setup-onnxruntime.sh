#!/usr/bin/env bash
# Installs ONNX Runtime's shared library from the PyPI wheel (once). The `ort` crate loads it at
# run time (feature `load-dynamic`) from ORT_DYLIB_PATH; nothing is downloaded at build time.
source "$(dirname "$0")/common.sh"
if [ -f "$ORT_DYLIB" ]; then log "ONNX Runtime $ORT_VERSION present ($ORT_DYLIB)"; exit 0; fi
log "fetching ONNX Runtime $ORT_VERSION (PyPI wheel) for its shared library"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
  --python-version 3.11 --implementation cp -d "$work" "onnxruntime==$ORT_VERSION" \
  || die "pip could not download onnxruntime==$ORT_VERSION (is PyPI reachable?)"
mkdir -p "$(dirname "$ORT_DYLIB")"
python3 - "$work"/onnxruntime-*.whl "$ORT_DYLIB" <<'PY'
import sys, zipfile, shutil
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so")]
    if not names:
        sys.exit(f"no libonnxruntime.so in {wheel}")
    with z.open(sorted(names, key=len)[-1]) as src, open(dest + ".tmp", "wb") as out:
        shutil.copyfileobj(src, out)
shutil.move(dest + ".tmp", dest)
PY
log "ONNX Runtime library installed at $ORT_DYLIB"
