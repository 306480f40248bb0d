"""The baseline a tutorial user would write: Flask + the PyTorch checkpoint in eager mode.

One forward pass per request, no batching across requests; torch's default threads unless
NAIVE_TORCH_THREADS sets them (the benchmarks set as many as the service's ONNX Runtime threads
per worker). The benchmarks run it with gunicorn's defaults, as many workers as the service
has (``NAIVE_TORCH_THREADS=1 gunicorn -c /dev/null -w 2 benchmarks.naive_server:app``: without
``-c``, gunicorn started in the repository would read the service's gunicorn.conf.py); every
worker loads the checkpoint at import. It answers ``POST /v1/sentiment`` with
``{"texts": [...]}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from flask import Flask, jsonify, request

from service.text.encoding import WordEncoder, WordEncoderConfig
from service.text.vocab import Vocab
from training.tasks.sentiment import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = Path(
    os.environ.get("NAIVE_CHECKPOINT", ROOT / "training/checkpoints/sentiment/best.pt")
)

if os.environ.get("NAIVE_TORCH_THREADS"):
    torch.set_num_threads(int(os.environ["NAIVE_TORCH_THREADS"]))
model, state = load_checkpoint(CHECKPOINT)
model.eval()
config = json.loads((ROOT / "exported_models/sentiment/manifest.json").read_text())
encoder = WordEncoder(Vocab(state["vocab"]), WordEncoderConfig(**config["preprocessing"]))
labels = state["labels"]

app = Flask(__name__)


@app.post("/v1/sentiment")
def sentiment():
    results = []
    for text in request.get_json()["texts"]:
        ids = encoder.encode(text).ids or [encoder.vocab.pad_id]
        with torch.no_grad():
            logits = model(torch.tensor([ids]), torch.tensor([len(ids)]))
            probabilities = torch.softmax(logits, dim=-1)[0].tolist()
        best = max(range(len(labels)), key=probabilities.__getitem__)
        results.append({"label": labels[best], "score": probabilities[best]})
    return jsonify({"results": results})
