"""Queries over event and feature tables: a small pandas-like API compiled to parameterised SQL.

    clicked = (ctx.events("clicks").since(minutes=5)
               .join(ctx.features("items"), on="item_id")
               .select("embedding"))
    user = clicked.mean("embedding")            # one vector (list of floats), or None with no rows
    top = (ctx.events("clicks").group_by("item_id")
           .agg(n=("id", "count"), dwell=("dwell_ms", "mean")).sort("n", descending=True).limit(10).rows())

A `Query` is immutable: each method returns a new one. SQLite does the work; values are
always bound parameters, never SQL text, and every column name is checked against the
columns the query has at that point (unknown ones raise DataError naming them and listing
the known). Each step applies to the result of the steps before it, as in pandas: a
`where` after a `limit` filters the limited rows (the compiler nests a subquery for that).
"""

from __future__ import annotations

import array
import datetime as dt
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import DataError
from ..tensor import Tensor
from .schema import Column

__all__ = ["AGGREGATES", "Grouped", "OPERATORS", "Query", "TableRef"]

OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "like")
AGGREGATES = ("count", "sum", "mean", "min", "max")
_SQL_OPS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "like": "LIKE"}
_SQL_AGG = {"count": "COUNT", "sum": "SUM", "mean": "AVG", "min": "MIN", "max": "MAX"}


@dataclass(frozen=True)
class TableRef:
    """A stored table: its SQL name (already checked), how errors name it, and a check run before each read."""

    sql_name: str
    label: str
    columns: tuple[Column, ...]
    before_read: Callable[[], None] | None = None
    age: Callable[[], float | None] | None = None  # feature tables: seconds since the copy was known current


@dataclass(frozen=True)
class _Join:
    left: _Level
    right: _Level
    on: str


@dataclass(frozen=True)
class _Level:
    """One SELECT: its source (a table, a nested level, or a join) and what it does to it."""

    source: TableRef | _Level | _Join
    columns: tuple[Column, ...]  # what the source gives this level
    where: tuple[tuple[str, str, Any], ...] = ()
    select: tuple[str, ...] | None = None
    group: tuple[str, ...] | None = None
    aggs: tuple[tuple[str, str, str], ...] = ()  # (output name, column, aggregate)
    order: tuple[tuple[str, bool], ...] = ()
    limit: int | None = None

    def output(self) -> tuple[Column, ...]:
        by_name = {c.name: c for c in self.columns}
        if self.group is not None:
            return tuple(by_name[g] for g in self.group) + tuple(_agg_column(out, by_name[col], fn) for out, col, fn in self.aggs)
        if self.select is not None:
            return tuple(by_name[s] for s in self.select)
        return self.columns


def _agg_column(out: str, col: Column, fn: str) -> Column:
    if fn == "count":
        return Column(out, "int", optional=True)
    if fn == "mean" or (fn == "sum" and col.kind in ("float", "ts")):
        return Column(out, "float", optional=True)
    if fn == "sum":
        return Column(out, "int", optional=True)
    return Column(out, col.kind, col.dim, optional=True)


class Query:
    """Rows of one table, or of a join, filtered, grouped, sorted, limited; read with rows(), columns(), tensor()..."""

    __slots__ = ("_connect", "_label", "_level")

    def __init__(self, connect: Callable[[], sqlite3.Connection], level: _Level | TableRef, label: str = "") -> None:
        if isinstance(level, TableRef):
            label = label or level.label
            level = _Level(level, level.columns)
        self._connect = connect
        self._level = level
        self._label = label or "query"

    # --- building ---------------------------------------------------------------------------

    @property
    def age(self) -> float | None:
        """Seconds since the oldest feature table this query reads was known current (None: no feature table, or no copy)."""
        ages = [t.age() for t in _tables(self._level) if t.age is not None]
        known = [a for a in ages if a is not None]
        return max(known) if known and len(known) == len(ages) else None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self._level.output()]

    def select(self, *columns: str) -> Query:
        """Only these columns, in this order."""
        if not columns:
            raise DataError(f"{self._label}: select() needs at least one column")
        for name in columns:
            self._column(name)
        level = self._open(lambda lv: lv.group is None)
        return self._with(replace(level, select=tuple(columns)))

    def where(self, column: str | None = None, op: str | None = None, value: Any = None, /, **equals: Any) -> Query:
        """Rows where `column op value` (op: == != < <= > >= in, not in, like), or where(col=value, ...) for equality."""
        conditions: list[tuple[str, str, Any]] = []
        if column is not None:
            if op is None:
                raise DataError(
                    f"{self._label}: where({column!r}, ...) needs an operator and a value, or use where({column}=value)"
                )
            conditions.append((column, op, value))
        conditions.extend((name, "==", v) for name, v in equals.items())
        if not conditions:
            raise DataError(f"{self._label}: where() needs a condition")
        checked = tuple(self._condition(*c) for c in conditions)
        level = self._open(lambda lv: lv.group is None and lv.limit is None)
        return self._with(replace(level, where=level.where + checked))

    def since(
        self, when: float | dt.datetime | None = None, *,
        days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0,
    ) -> Query:
        """Rows whose `ts` is at or after `when` (epoch seconds or a datetime), or within the last days/hours/minutes/seconds."""
        if when is None:
            span = days * 86400 + hours * 3600 + minutes * 60 + seconds
            if span <= 0:
                raise DataError(f"{self._label}: since() needs a time, or a positive days/hours/minutes/seconds")
            return self.where("ts", ">=", time.time() - span)
        return self.where("ts", ">=", _epoch(when, self._label))

    def between(self, start: float | dt.datetime, end: float | dt.datetime) -> Query:
        """Rows with start <= ts < end (epoch seconds or datetimes)."""
        return self.where("ts", ">=", _epoch(start, self._label)).where("ts", "<", _epoch(end, self._label))

    def sort(self, *columns: str, descending: bool = False) -> Query:
        """Sorted by these columns (the first one first), replacing any earlier order."""
        if not columns:
            raise DataError(f"{self._label}: sort() needs at least one column")
        for name in columns:
            if self._column(name, unselected=True).kind == "vector":
                raise DataError(f"{self._label}: cannot sort by vector column {name!r}")
        level = self._open(lambda lv: lv.limit is None)
        return self._with(replace(level, order=tuple((c, descending) for c in columns)))

    def limit(self, n: int) -> Query:
        """At most n rows."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise DataError(f"{self._label}: limit() needs a whole number >= 0, got {n!r}")
        level = self._level
        return self._with(replace(level, limit=n if level.limit is None else min(n, level.limit)))

    def group_by(self, *columns: str) -> Grouped:
        """Groups of rows with equal values in these columns; finish with .agg(name=(column, aggregate), ...)."""
        if not columns:
            raise DataError(f"{self._label}: group_by() needs at least one column")
        for name in columns:
            if self._column(name).kind == "vector":
                raise DataError(f"{self._label}: cannot group by vector column {name!r}")
        return Grouped(self, tuple(columns))

    def join(self, other: Query, on: str) -> Query:
        """Rows of both with equal `on` (an inner join, like pandas merge); columns: this query's, then the other's but `on`."""
        if not isinstance(other, Query):
            raise DataError(f"{self._label}: join() needs another query, e.g. ctx.features('items')")
        mine, theirs = self._column(on), other._column(on)
        if mine.kind != theirs.kind or mine.kind == "vector":
            raise DataError(
                f"{self._label}: cannot join on {on!r}: it is {mine.type_text} here and {theirs.type_text} in {other._label}"
            )
        names = set(self.column_names)
        clash = [c for c in other.column_names if c != on and c in names]
        if clash:
            raise DataError(
                f"{self._label}: both sides of the join have columns {clash}; select() the ones you need from one side first"
            )
        columns = self._level.output() + tuple(c for c in other._level.output() if c.name != on)
        label = f"{self._label} joined with {other._label}"
        return Query(self._connect, _Level(_Join(self._level, other._level, on), columns), label)

    # --- reading ----------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """Every row as a dict (vectors as lists of floats, bools as bools)."""
        columns = self._level.output()
        decode = [(c.name, c.decode) for c in columns]
        return [{name: fn(v) for (name, fn), v in zip(decode, row)} for row in self._execute()]

    def columns(self) -> dict[str, list[Any]]:
        """{column: its values}, in row order."""
        columns = self._level.output()
        result: dict[str, list[Any]] = {c.name: [] for c in columns}
        lists = [(result[c.name], c.decode) for c in columns]
        for row in self._execute():
            for (values, fn), v in zip(lists, row):
                values.append(fn(v))
        return result

    def first(self) -> dict[str, Any] | None:
        rows = self.limit(1).rows()
        return rows[0] if rows else None

    def count(self) -> int:
        sql, params = self.sql()
        return int(self._run(f"SELECT COUNT(*) FROM ({sql})", params)[0][0])

    def tensor(self, column: str) -> Tensor:
        """A vector column as one float32 Tensor of shape (rows, dim), from the stored bytes as they are."""
        col = self._vector(column)
        blobs = [b for (b,) in self._blobs(column)]
        data = bytearray(b"".join(blobs))
        if sys.byteorder == "big":
            values = array.array("f", data)
            values.byteswap()
            data = bytearray(values.tobytes())
        assert col.dim is not None
        return Tensor("float32", memoryview(data).cast("f"), (len(blobs), col.dim))

    def mean(self, column: str) -> Any:
        """The mean of a column: a list of floats for a vector column, a float for a number column; None without rows."""
        col = self._column(column)
        if col.kind == "vector":
            blobs = [b for (b,) in self._blobs(column)]
            if not blobs:
                return None
            values = array.array("f")
            values.frombytes(b"".join(blobs))
            if sys.byteorder == "big":
                values.byteswap()
            n, dim = len(blobs), col.dim or 1
            return [sum(values[j::dim]) / n for j in range(dim)]  # each slice and sum run in C
        if col.kind not in ("int", "float", "bool", "ts"):
            raise DataError(f"{self._label}: mean() needs a number or vector column; {column!r} is {col.type_text}")
        sql, params = self.sql()
        return self._run(f'SELECT AVG("{column}") FROM ({sql})', params)[0][0]

    def sql(self) -> tuple[str, list[Any]]:
        """The SQL text and its parameters (for reading and debugging; values are never in the text)."""
        params: list[Any] = []
        return _compile(self._level, params), params

    def __repr__(self) -> str:
        return f"<Query {self._label}: {self.sql()[0]}>"

    # --- internals --------------------------------------------------------------------------

    def _with(self, level: _Level) -> Query:
        return Query(self._connect, level, self._label)

    def _open(self, mergeable: Callable[[_Level], bool]) -> _Level:
        """This level if the next step can join it, else a new level over it (as a subquery)."""
        level = self._level
        return level if mergeable(level) else _Level(level, level.output())

    def _column(self, name: Any, *, unselected: bool = False) -> Column:
        """The column `name` of the result; with `unselected`, also one select() left out (where and sort may use it)."""
        level = self._level
        columns = level.output()
        if unselected and level.group is None and level.limit is None:
            columns = columns + level.columns
        for col in columns:
            if col.name == name:
                return col
        self._check_tables()  # a table with no copy yet says so, rather than that it lacks the column
        raise DataError(f"{self._label} has no column {name!r}; it has {self.column_names}")

    def _vector(self, name: str) -> Column:
        col = self._column(name)
        if col.kind != "vector":
            raise DataError(f"{self._label}: {name!r} is {col.type_text}, not a vector column")
        return col

    def _condition(self, column: str, op: str, value: Any) -> tuple[str, str, Any]:
        col = self._column(column, unselected=True)
        if op == "=":
            op = "=="
        if op not in OPERATORS:
            raise DataError(f"{self._label}: unknown operator {op!r}; operators are {list(OPERATORS)}")
        if col.kind == "vector":
            raise DataError(f"{self._label}: cannot filter on vector column {column!r}")
        where = f"{self._label}, where on {column!r}"
        if op in ("in", "not in"):
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise DataError(f"{where}: {op!r} needs a list of values, got {type(value).__name__}")
            return column, op, tuple(_check_value(col, v, where) for v in value)
        if op == "like":
            if col.kind != "str" or not isinstance(value, str):
                raise DataError(f"{where}: 'like' needs a str column and a str pattern")
            return column, op, value
        if value is None and op not in ("==", "!="):
            raise DataError(f"{where}: None can only be compared with == or !=")
        return column, op, None if value is None else _check_value(col, value, where)

    def _blobs(self, column: str) -> list[tuple[bytes]]:
        sql, params = self.sql()
        rows = self._run(f'SELECT "{column}" FROM ({sql})', params)
        if any(b is None for (b,) in rows):
            raise DataError(
                f"{self._label}: vector column {column!r} has missing values; filter them out with where({column!r}, '!=', None)"
            )
        return rows

    def _execute(self) -> list[tuple[Any, ...]]:
        sql, params = self.sql()
        return self._run(sql, params)

    def _check_tables(self) -> None:
        for table in _tables(self._level):
            if table.before_read is not None:
                table.before_read()

    def _run(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        self._check_tables()
        try:
            return self._connect().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # declared, but nothing stored yet
            raise DataError(f"{self._label}: {exc}") from exc


class Grouped:
    """A query grouped by columns, waiting for its aggregates: .agg(n=("id", "count"), avg=("dwell", "mean"))."""

    def __init__(self, query: Query, columns: tuple[str, ...]) -> None:
        self._query = query
        self._columns = columns

    def agg(self, **aggregates: tuple[str, str]) -> Query:
        query = self._query
        if not aggregates:
            raise DataError(f"{query._label}: agg() needs at least one name=(column, aggregate)")
        checked: list[tuple[str, str, str]] = []
        for out, spec in aggregates.items():
            if not (isinstance(spec, tuple) and len(spec) == 2):
                raise DataError(f"{query._label}: agg {out}= must be (column, aggregate), e.g. ('id', 'count')")
            name, fn = spec
            col = query._column(name)
            if fn not in AGGREGATES:
                raise DataError(f"{query._label}: unknown aggregate {fn!r}; aggregates are {list(AGGREGATES)}")
            if col.kind == "vector" and fn != "count":
                raise DataError(f"{query._label}: cannot {fn} vector column {name!r} per group; use .mean({name!r}) on a query")
            if fn in ("sum", "mean") and col.kind not in ("int", "float", "bool", "ts"):
                raise DataError(f"{query._label}: cannot {fn} {col.type_text} column {name!r}")
            if out in self._columns:
                raise DataError(f"{query._label}: aggregate name {out!r} is also a group column")
            checked.append((out, name, fn))
        level = query._open(lambda lv: lv.group is None and lv.limit is None and not lv.order)
        return query._with(replace(level, group=self._columns, aggs=tuple(checked)))


def _check_value(col: Column, value: Any, where: str) -> Any:
    if col.kind == "ts":
        value = _epoch(value, where) if isinstance(value, dt.datetime) else value
    return Column(col.name, col.kind, col.dim, optional=False).encode(value, where)


def _epoch(when: Any, where: str) -> float:
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise DataError(f"{where}: the datetime {when.isoformat()} has no timezone; give one (e.g. datetime.timezone.utc)")
        return when.timestamp()
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return float(when)
    raise DataError(f"{where}: a time must be epoch seconds or a datetime, got {type(when).__name__}")


def _tables(level: _Level) -> list[TableRef]:
    source = level.source
    if isinstance(source, TableRef):
        return [source]
    if isinstance(source, _Join):
        return _tables(source.left) + _tables(source.right)
    return _tables(source)


def _compile(level: _Level, params: list[Any]) -> str:
    """SELECT ... FROM source [WHERE] [GROUP BY] [ORDER BY] [LIMIT]; identifiers were checked, values go to `params`."""
    source = level.source
    if isinstance(source, TableRef):
        from_sql = source.sql_name
    elif isinstance(source, _Join):
        from_sql = _compile_join(source, params)
    else:
        from_sql = f"({_compile(source, params)})"
    if level.group is not None:
        parts = [f'"{g}"' for g in level.group]
        parts += [f'{_SQL_AGG[fn]}("{col}") AS "{out}"' for out, col, fn in level.aggs]
    else:
        parts = [f'"{c.name}"' for c in level.output()]
    sql = f"SELECT {', '.join(parts)} FROM {from_sql}"
    if level.where:
        sql += " WHERE " + " AND ".join(_compile_condition(c, params) for c in level.where)
    if level.group is not None:
        sql += " GROUP BY " + ", ".join(f'"{g}"' for g in level.group)
    if level.order:
        sql += " ORDER BY " + ", ".join(f'"{c}"{" DESC" if desc else ""}' for c, desc in level.order)
    if level.limit is not None:
        sql += " LIMIT ?"
        params.append(level.limit)
    return sql


def _compile_join(join: _Join, params: list[Any]) -> str:
    left = _compile(join.left, params)
    right = _compile(join.right, params)
    cols = [f'l."{c.name}" AS "{c.name}"' for c in join.left.output()]
    cols += [f'r."{c.name}" AS "{c.name}"' for c in join.right.output() if c.name != join.on]
    return f'(SELECT {", ".join(cols)} FROM ({left}) AS l JOIN ({right}) AS r ON l."{join.on}" = r."{join.on}")'


def _compile_condition(condition: tuple[str, str, Any], params: list[Any]) -> str:
    column, op, value = condition
    if value is None:
        return f'"{column}" IS {"NOT " if op == "!=" else ""}NULL'
    if op in ("in", "not in"):
        params.extend(value)
        return f'"{column}" {op.upper()} ({", ".join("?" * len(value))})'
    params.append(value)
    return f'"{column}" {_SQL_OPS[op]} ?'
