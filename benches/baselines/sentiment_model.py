"""The sentiment model as a Python service would run it: the same model.onnx and tokenizer.json
that tidal serves, onnxruntime with one intra-op thread, one request at a time."""
import json
import os
import tomllib

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def manifest(name):
    """The manifest `name`.toml from TIDAL_MANIFEST_DIR (what `tidal bench --manifest-dir` gives
    tidal), else the repository's models/ (tidal's built-in manifests)."""
    folder = os.environ.get("TIDAL_MANIFEST_DIR") or os.path.join(REPO, "models")
    with open(os.path.join(folder, f"{name}.toml"), "rb") as f:
        return tomllib.load(f)


class SentimentModel:
    def __init__(self, model_dir):
        found = manifest("sentiment")
        self.version = found["version"]
        spec = found["text-classification"]
        self.labels = spec["labels"]
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, spec["tokenizer"]))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(spec["max_tokens"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            os.path.join(model_dir, spec["model"]), options, providers=["CPUExecutionProvider"]
        )
        self.names = (spec["input_ids"], spec["attention_mask"], spec["logits"])

    def predict(self, text):
        encoding = self.tokenizer.encode(text)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask], dtype=np.int64)
        (logits,) = self.session.run([self.names[2]], {self.names[0]: ids, self.names[1]: mask})
        row = logits[0].astype(np.float64)
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        return {"label": self.labels[best], "score": float(probs[best])}


def answer(model, raw):
    """Request JSON bytes → result JSON bytes (the same shape as tidal's results)."""
    request = json.loads(raw)
    result = model.predict(request["text"])
    return json.dumps(
        {"id": request.get("id"), "model": "sentiment", "model_version": model.version, "status": "ok", "result": result}
    ).encode()
