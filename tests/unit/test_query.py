"""Queries give pandas' answers: hypothesis-generated tables and queries, SQLite vs pandas as an independent reference."""

from __future__ import annotations

import math
import operator
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pyodide"))
from waystation.device import DataError

from data_parity import generate_case, load, run_case

_AGG = {"count": "count", "sum": "sum", "mean": "mean", "min": "min", "max": "max"}
_EVENT_COLUMNS = ["id", "ts", "item_id", "user", "dwell", "score", "liked", "emb"]
PANDAS_OPS = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "in": lambda series, value: series.isin(value), "not in": lambda series, value: ~series.isin(value),
}


def reference(case: dict[str, Any]) -> Any:
    """The case answered by pandas from the case's own data (not read back from SQLite)."""
    events = [{"id": f"{i:032x}", **e} for i, e in enumerate(case["events"])]
    df = pd.DataFrame(events, columns=_EVENT_COLUMNS)
    items = pd.DataFrame(case["items"], columns=["item_id", "cat", "price", "vec"])
    for step in case["query"]:
        kind, args = step[0], step[1:]
        if kind == "since":
            df = df[df.ts >= args[0]]
        elif kind == "between":
            df = df[(df.ts >= args[0]) & (df.ts < args[1])]
        elif kind == "where":
            column, op, value = args
            series = df[column]
            df = df[PANDAS_OPS[op](series, value)]
        elif kind == "join":
            df = df.merge(items, on=args[0], how="inner")
        elif kind == "select":
            df = df[list(args[0])]
        elif kind == "group":
            keys, aggs = args
            if len(df) == 0:
                df = pd.DataFrame(columns=[*keys, *aggs])
            else:
                df = df.groupby(keys, as_index=False).agg(**{k: (c, _AGG[f]) for k, (c, f) in aggs.items()})
        elif kind == "sort":
            df = df.sort_values(list(args[0]), ascending=not args[1], kind="stable")
        elif kind == "limit":
            df = df.head(args[0])
    read = case["read"]
    if read[0] == "rows":
        return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict("records")]
    if read[0] == "count":
        return len(df)
    if read[0] == "mean":
        if len(df) == 0:
            return None
        column = df[read[1]]
        if isinstance(column.iloc[0], list):
            return np.mean(np.stack(column.to_list()), axis=0).tolist()
        return float(column.mean())
    values = [list(map(float, v)) for v in df[read[1]]]
    return {"shape": [len(values), 3], "values": values}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, np.ndarray)):
        return [float(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_queries_give_pandas_answers(rng: random.Random) -> None:
    case = generate_case(rng)
    answer = run_case(case)
    assert "ok" in answer, (case["query"], answer)
    expected = reference(case)
    assert same(answer["ok"], expected), (case["query"], case["read"], answer["ok"], expected)


def test_values_never_enter_the_sql_text() -> None:
    data = load({"events": [], "items": []})
    nasty = "x' OR 1=1; DROP TABLE \"ft_items\"; --"
    query = data.event_query("clicks").where("user", "==", nasty).where("item_id", "in", [nasty, "b"]).since(5.0).limit(3)
    sql, params = query.sql()
    assert nasty not in sql and "5.0" not in sql and params == [nasty, nasty, "b", 5.0, 3]
    assert query.count() == 0 and data.feature_query("items").count() == 0


def test_queries_are_immutable() -> None:
    data = load(generate_case(random.Random(3)))
    base = data.event_query("clicks")
    before = base.sql()
    narrowed = base.where("dwell", ">", 10).select("user").limit(2)
    assert base.sql() == before and narrowed.sql() != before
    assert base.count() >= narrowed.count()


@pytest.mark.parametrize(("build_query", "message"), [
    (lambda q, f: q.select("price"),
     "has no column 'price'; it has ['id', 'ts', 'item_id', 'user', 'dwell', 'score', 'liked', 'emb']"),
    (lambda q, f: q.sort("emb"), "cannot sort by vector column 'emb'"),
    (lambda q, f: q.where("emb", "==", [1, 2, 3]), "cannot filter on vector column 'emb'"),
    (lambda q, f: q.where("user", "like", 3), "'like' needs a str column and a str pattern"),
    (lambda q, f: q.where("dwell", "in", "abc"), "'in' needs a list of values"),
    (lambda q, f: q.where("liked", "==", 1), "expected bool, got int"),
    (lambda q, f: q.limit(-1), "limit() needs a whole number >= 0"),
    (lambda q, f: q.group_by("user").agg(s=("user", "sum")), "cannot sum str column 'user'"),
    (lambda q, f: q.group_by("user").agg(s=("emb", "max")), "cannot max vector column 'emb' per group"),
    (lambda q, f: q.join(f, on="user"), "has no column 'user'"),
    (lambda q, f: q.join(f.select("item_id"), on="item_id").mean("user"), "mean() needs a number or vector column"),
    (lambda q, f: q.tensor("dwell"), "'dwell' is int, not a vector column"),
    (lambda q, f: q.since(), "since() needs a time"),
])
def test_bad_queries_say_what_is_wrong(build_query: Any, message: str) -> None:
    data = load({"events": [], "items": []})
    with pytest.raises(DataError) as error:
        build_query(data.event_query("clicks"), data.feature_query("items"))
    assert message in str(error.value)


def test_the_five_minute_example_of_the_readme() -> None:
    """clicks of the last five minutes, joined with the items' embeddings, averaged."""
    import asyncio
    import time

    data = load({"events": [], "items": [{"item_id": "a", "cat": "x", "price": 1.0, "vec": [1, 0, 0]},
                                         {"item_id": "b", "cat": "y", "price": 2.0, "vec": [0, 1, 0]}]})
    now = time.time()
    rows = [("a", now - 10), ("a", now - 20), ("b", now - 30), ("b", now - 3600)]
    asyncio.run(data.add_events("clicks", [{"item_id": i, "user": "u", "dwell": 1, "score": 0.0, "liked": False,
                                            "emb": [0, 0, 0], "ts": ts} for i, ts in rows]))
    clicked = data.event_query("clicks").since(minutes=5).join(data.feature_query("items"), on="item_id").select("vec")
    assert clicked.mean("vec") == pytest.approx([2 / 3, 1 / 3, 0])
    assert clicked.tensor("vec").shape == (3, 3)
    assert data.event_query("clicks").since(minutes=5).where(item_id="zz").mean("emb") is None
