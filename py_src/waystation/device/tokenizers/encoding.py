"""`Encoding`: what a tokenizer hands to a model, one text's ids with their masks."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Encoding"]


@dataclass(slots=True)
class Encoding:
    """One encoded text, padding included; `truncated` says the text was cut to fit.

    >>> enc = Encoding([101, 7592, 102, 0], [1, 1, 1, 0], [0, 0, 0, 0], ["[CLS]", "hi", "[SEP]", "[PAD]"])
    >>> len(enc), enc.truncated
    (4, False)
    """

    ids: list[int]
    attention_mask: list[int]
    type_ids: list[int]
    tokens: list[str]
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.ids)
