"""Special tokens and artifact file names, defined once."""

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json"
LABELS_FILE = "labels.json"
MODEL_GRAPH_FILE = "model.onnx"
CHARS_FILE = "chars.json"  # character vocabulary of a character-aware model (NER)
CRF_FILE = "crf.json"  # CRF transition, start and end scores (NER)

# Translation (encoder-decoder with sentencepiece subwords).
SOURCE_SPM_FILE = "source.model"  # sentencepiece model of the source language
TARGET_SPM_FILE = "target.model"  # sentencepiece model of the target language
TRUECASE_FILE = "truecase.json"  # usual case of the source words (service.text.truecase)
ENCODER_GRAPH_FILE = "encoder.onnx"
DECODER_STEP_GRAPH_FILE = "decoder_step.onnx"
SUBWORD_PAD_ID = 0  # sentencepiece ids reserved at training (pad, unk, bos, eos)
SUBWORD_UNK_ID = 1
SUBWORD_BOS_ID = 2
SUBWORD_EOS_ID = 3
EOS_PIECE = "</s>"
