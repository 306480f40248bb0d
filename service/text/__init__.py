"""Text pipeline shared by training and serving (numpy only, never torch).

Everything that turns a string into model inputs lives here, so that the training code and the
service cannot disagree about tokenization, vocabulary lookup or padding.
"""

from service.text.encoding import EncodedText, WordEncoder
from service.text.padding import pad_batch
from service.text.tokenize import Token, tokenize
from service.text.vocab import Vocab

__all__ = ["EncodedText", "Token", "Vocab", "WordEncoder", "pad_batch", "tokenize"]
