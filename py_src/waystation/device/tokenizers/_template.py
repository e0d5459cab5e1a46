"""The post-processor: special tokens around the text ([CLS] A [SEP] for BERT)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .encoding import Encoding

__all__ = ["Template"]

Special = tuple[int, str, int]  # id, token, type id


class Template:
    """Special tokens before and after a single sequence, and the sequence's type id."""

    def __init__(self, before: Sequence[Special] = (), after: Sequence[Special] = (),
                 type_id: int = 0) -> None:
        self.type_id = type_id
        self.added = len(before) + len(after)
        # apply() runs once per text: its pieces are kept ready as lists.
        self._ids = [s[0] for s in before], [s[0] for s in after]
        self._tokens = [s[1] for s in before], [s[1] for s in after]
        self._types = [s[2] for s in before], [s[2] for s in after]

    def apply(self, ids: list[int], tokens: list[str], truncated: bool) -> Encoding:
        n = len(ids)
        return Encoding(
            ids=self._ids[0] + ids + self._ids[1],
            attention_mask=[1] * (n + self.added),
            type_ids=self._types[0] + [self.type_id] * n + self._types[1],
            tokens=self._tokens[0] + tokens + self._tokens[1],
            truncated=truncated,
        )

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Template:
        kind = None if config is None else config.get("type")
        if config is None:
            return cls()
        if kind == "TemplateProcessing":
            return _from_template(config)
        if kind == "BertProcessing":
            (cls_token, cls_id), (sep_token, sep_id) = config["cls"], config["sep"]
            return cls([(cls_id, cls_token, 0)], [(sep_id, sep_token, 0)])
        raise ValueError(f"unsupported post_processor {kind!r}: expected TemplateProcessing, "
                         "BertProcessing or null")


def _from_template(config: dict[str, Any]) -> Template:
    specials = config.get("special_tokens", {})
    before: list[Special] = []
    after: list[Special] = []
    type_id: int | None = None
    for piece in config["single"]:
        if "Sequence" in piece:
            if type_id is not None or piece["Sequence"]["id"] != "A":
                raise ValueError("unsupported post_processor: the single template must hold $A once")
            type_id = piece["Sequence"]["type_id"]
        else:
            token = piece["SpecialToken"]
            entry = specials[token["id"]]
            found = [(i, t, token["type_id"]) for i, t in zip(entry["ids"], entry["tokens"], strict=True)]
            (before if type_id is None else after).extend(found)
    if type_id is None:
        raise ValueError("unsupported post_processor: the single template has no $A")
    return Template(before, after, type_id)
