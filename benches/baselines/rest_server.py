"""Baseline (b): the REST endpoint a team would write instead of tidal — Flask behind gunicorn
(sync worker), one request at a time through the same model.

Run: TIDAL_MODEL_DIR=... [TIDAL_MANIFEST_DIR=...] gunicorn -w 1 -b 127.0.0.1:8765 --chdir benches/baselines rest_server:app
POST /predict with a request JSON → the result JSON."""
import os

from flask import Flask, Response, request

from sentiment_model import SentimentModel, answer

app = Flask(__name__)
model = SentimentModel(os.environ["TIDAL_MODEL_DIR"])


@app.post("/predict")
def predict():
    return Response(answer(model, request.get_data()), mimetype="application/json")


@app.get("/health")
def health():
    return "ok"
