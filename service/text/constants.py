"""Special tokens and artifact file names, defined once."""

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json"
LABELS_FILE = "labels.json"
MODEL_GRAPH_FILE = "model.onnx"
CHARS_FILE = "chars.json"  # character vocabulary of a character-aware model (NER)
CRF_FILE = "crf.json"  # CRF transition, start and end scores (NER)
