"""Baseline (a): the Python stream consumer a team would write instead of tidal — confluent-kafka
consumer with auto-commit, per-message inference with onnxruntime, a result produced per request
(at-least-once, no batching, no transactions), as in a Faust-style worker.

Usage: stream_consumer.py BROKERS REQUEST_TOPIC RESULT_TOPIC GROUP MODEL_DIR [sentiment|ocr|face-match]
The model's manifest comes from TIDAL_MANIFEST_DIR if set, else the repository's models/."""
import signal
import sys

from confluent_kafka import Consumer, Producer

import image_models
import sentiment_model


def load(name, model_dir):
    """The model `name` and its request → result function."""
    if name == "sentiment":
        model = sentiment_model.SentimentModel(model_dir)
        return lambda raw: sentiment_model.answer(model, raw)
    image_model = {"ocr": image_models.OcrModel, "face-match": image_models.FaceMatchModel}.get(name)
    if image_model is None:
        raise SystemExit(f"unknown model {name!r}: sentiment, ocr or face-match")
    model = image_model(model_dir)
    return lambda raw: image_models.answer(model, name, raw)


def main():
    brokers, request_topic, result_topic, group, model_dir = sys.argv[1:6]
    answer = load(sys.argv[6] if len(sys.argv) > 6 else "sentiment", model_dir)
    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": True}
    )
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 1, "enable.idempotence": True})
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    consumer.subscribe([request_topic])
    while running[0]:
        message = consumer.poll(0.1)
        if message is None or message.error():
            continue
        producer.produce(result_topic, key=message.key(), value=answer(message.value()))
        producer.poll(0)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
