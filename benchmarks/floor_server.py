"""The floor: what Flask under the service's gunicorn settings costs per request on its own.

It answers ``POST /v1/sentiment`` in the service's shape (a JSON body with ``texts`` in, one
result per text out) with fixed numbers: no model, no text encoding, no validation beyond
reading the JSON, no logging, no metrics. Run with the service's gunicorn settings
(``gunicorn -c gunicorn.conf.py benchmarks.floor_server:app``), its throughput is about the
most that a Flask app answers under those settings on this machine; the load test puts the
service next to it, so the report can say how much of a target ratio is left for the model.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

RESULT = {
    "label": "positive",
    "score": 0.5,
    "scores": {"negative": 0.5, "positive": 0.5},
    "truncated": False,
}

app = Flask(__name__)


@app.post("/v1/sentiment")
def sentiment():
    texts = request.get_json()["texts"]
    return jsonify({"model": {"name": "floor", "version": "0"}, "results": [RESULT] * len(texts)})
