"""Tokenizers that run on the device: pure Python, identical ids to Hugging Face `tokenizers`.

    from waystation.device.tokenizers import WordPieceTokenizer

    tok = WordPieceTokenizer.from_file("tokenizer.json")
    batch = tok.encode_batch(["Hello world", "Offline first"], padding="longest")
    batch[0].ids, batch[0].attention_mask, batch[0].type_ids
"""

from .encoding import Encoding
from .wordpiece import WordPieceTokenizer

__all__ = ["Encoding", "WordPieceTokenizer"]
