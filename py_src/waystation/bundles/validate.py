"""Checking a bundle.toml before anything is built: every key known, of its type, with its line.

    config = read_config(Path("models/digits/bundle.toml"))   # the parsed TOML, or InvalidBundleError

Every problem of the file is collected and raised at once as one `InvalidBundleError`, each
naming the file, the line (found by scanning the text: tomllib keeps no positions) and the
key, with a "did you mean" for a misspelt key or table. docs/bundles.md lists every key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..device.data.schema import EventTable, FeatureTable
from ..device.errors import BundleError, DataError
from ..device.manifest import is_safe_path
from ..device.telemetry import parse_toml as parse_telemetry
from ..device.tensor import DTYPES

__all__ = ["InvalidBundleError", "Lines", "MODEL_KEYS", "Problem", "TOP_KEYS", "did_you_mean", "read_config"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # one path segment and URL segment
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # a key of the manifest's JSON (device/manifest.py)
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?")

Check = Callable[[Any], bool]
Kind = tuple[Check, str]  # a check of a value and the type it expects, for the message
Spec = dict[str, tuple[Kind, bool]]  # key -> (kind, required)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_int_list(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(x) for x in v)


_STR: Kind = (_is_str, "a string")
_INT: Kind = (_is_int, "an integer")
_TABLE: Kind = (_is_table, "a table")
_STR_LIST: Kind = (_is_str_list, "a list of strings")
_INT_LIST: Kind = (_is_int_list, "a list of integers")

TOP_KEYS: Spec = {
    "name": (_STR, True),
    "version": (_STR, True),
    "workflow": (_STR, True),
    "description": (_STR, False),
    "parent": (_STR, False),
    "recipe": (_STR, False),
    "files": (_STR_LIST, False),
    "models": (_TABLE, False),
    "variants": (_TABLE, False),
    "events": (_TABLE, False),
    "features": (_TABLE, False),
    "telemetry": (_TABLE, False),
}
MODEL_KEYS: Spec = {
    "file": (_STR, True),
    "sample": (_TABLE, False),
    "layout": (_STR, False),
    "execution": (_STR_LIST, False),
}
_SAMPLE_KEYS: Spec = {"dtype": (_STR, True), "shape": (_INT_LIST, True), "fill": (_INT, True)}
_VARIANT_KEYS: Spec = {"models": (_TABLE, False)}
_EVENT_KEYS: Spec = {"fields": (_TABLE, True), "retention": (_TABLE, False), "relay": (_STR_LIST, False), "hook": (_STR, False)}
_RETENTION_KEYS: Spec = {k: (_INT, False) for k in ("days", "hours", "minutes", "seconds", "rows")}
_FEATURE_KEYS: Spec = {"key": (_STR, True), "max_age": (_STR, False)}
_LAYOUTS = ("by-layer", "as-made")
# Where a model may run on a device, in order of preference; WASM is the fallback and must be there.
_EXECUTION_PROVIDERS = ("webgpu", "wasm")


@dataclass(frozen=True)
class Problem:
    """One mistake: the file it is in, its line when known, and what is wrong."""

    file: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class InvalidBundleError(BundleError):
    """A bundle source has mistakes; `problems` lists every one found, each with file and line."""

    def __init__(self, problems: list[Problem], what: str = "bundle source") -> None:
        self.problems = list(problems)
        if len(problems) == 1:
            text = str(problems[0])
        else:
            text = f"{what} has {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(text)


def did_you_mean(word: str, choices: Any) -> str:
    """'; did you mean 'x'?' for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Lines:
    """Where a key path is written in a TOML text: a simple scan of table headers and `key =` lines."""

    _HEADER = re.compile(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _ASSIGN = re.compile(r"\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")

    def __init__(self, text: str) -> None:
        self.places: list[tuple[tuple[str, ...], int]] = []
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                table = _dotted(header.group(1))
                self.places.append((table, number))
                continue
            assign = self._ASSIGN.match(line)
            if assign:
                self.places.append((table + _dotted(assign.group(1)), number))

    def find_item(self, path: tuple[str, ...]) -> int | None:
        """Like `find`, where a part "#N" is the N-th (from 0) table of an array of tables, e.g.
        ("telemetry", "alerts", "#1", "psi"): the `psi =` line of the second [[telemetry.alerts]]."""
        at = next((i for i, part in enumerate(path) if part.startswith("#") and part[1:].isdigit()), None)
        if at is None:
            return self.find(path)
        array, index, rest = path[:at], int(path[at][1:]), path[at + 1:]
        headers = [i for i, (place, _) in enumerate(self.places) if place == array]
        if index >= len(headers):
            return self.find(array)
        start = headers[index]
        end = headers[index + 1] if index + 1 < len(headers) else len(self.places)
        for place, number in self.places[start + 1:end]:
            if rest and place == array + rest:
                return number
        return self.places[start][1]

    def find(self, path: tuple[str, ...]) -> int | None:
        """The line of `path`, else of the first table or key under it, else of its nearest parent."""
        while path:
            for place, number in self.places:
                if place == path:
                    return number
            for place, number in self.places:
                if place[:len(path)] == path:
                    return number
            path = path[:-1]
        return None


def _dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", text)
    return tuple(next(p for p in groups if p) if any(groups) else "" for groups in parts)


def read_config(path: Path) -> dict[str, Any]:
    """Parse and check `path` (a bundle.toml); InvalidBundleError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"{path.parent} is not a bundle source: it has no bundle.toml") from None
    except UnicodeDecodeError as exc:
        raise InvalidBundleError([Problem(path, None, f"is not UTF-8 text: {exc}")]) from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))
        raise InvalidBundleError([Problem(path, int(line.group(1)) if line else None, f"is not valid TOML: {exc}")]) from None
    checker = _Checker(path, Lines(text))
    checker.config(config)
    if checker.problems:
        raise InvalidBundleError(sorted(checker.problems, key=lambda p: p.line or 0), f"{path}")
    return config


class _Checker:
    def __init__(self, path: Path, lines: Lines) -> None:
        self.path = path
        self.lines = lines
        self.problems: list[Problem] = []

    def problem(self, keys: tuple[str, ...], message: str) -> None:
        self.problems.append(Problem(self.path, self.lines.find(keys), message))

    def table(self, value: dict[str, Any], keys: tuple[str, ...], spec: Spec) -> bool:
        """Unknown, missing and mistyped keys of one table; True when all its keys are known and well typed."""
        ok = True
        where = f"[{'.'.join(keys)}] " if keys else ""
        for key, item in value.items():
            if key not in spec:
                if isinstance(item, dict) and not keys:
                    hint = did_you_mean(key, [k for k, ((_, kind), _) in spec.items() if kind == "a table"])
                    shown, hint = f"table [{key}]", re.sub(r"'(.*)'", r"[\1]", hint)
                else:
                    shown, hint = f"key {key!r}", did_you_mean(key, spec)
                self.problem((*keys, key), f"{where}unknown {shown}{hint} (known: {', '.join(spec)})")
                ok = False
                continue
            (check, expected), _ = spec[key]
            if not check(item):
                self.problem((*keys, key), f"{where}{key!r} must be {expected}, got {_shown(item)}")
                ok = False
        for key, (_, required) in spec.items():
            if required and key not in value:
                self.problem(keys, f"{where}missing required key {key!r}")
                ok = False
        return ok

    def config(self, config: dict[str, Any]) -> None:
        self.table(config, (), TOP_KEYS)  # the checks below skip what is missing or mistyped
        self.names(config)
        for key in ("workflow", "recipe"):
            if isinstance(config.get(key), str):  # a recipe may make the workflow, never itself
                in_folder = key == "recipe" or not isinstance(config.get("recipe"), str)
                self.file_name((key,), config[key], must_exist=in_folder)
        files: list[str] = config["files"] if _is_str_list(config.get("files")) else []
        for i, name in enumerate(files):
            self.file_name(("files",), name, must_exist=False, what=f"files[{i}]")
        models: dict[str, Any] = config["models"] if isinstance(config.get("models"), dict) else {}
        for name, model in models.items():
            self.model(name, model)
        self.duplicates(config, models)
        if isinstance(config.get("variants"), dict):
            for name, variant in config["variants"].items():
                self.variant(name, variant, models)
        self.tables(config, "events", _EVENT_KEYS, EventTable.parse)
        self.tables(config, "features", _FEATURE_KEYS, FeatureTable.parse)
        if isinstance(config.get("telemetry"), dict):
            for keys, message in parse_telemetry(config["telemetry"])[1]:
                self.problems.append(Problem(self.path, self.lines.find_item(keys), message))

    def names(self, config: dict[str, Any]) -> None:
        name, version, parent = config.get("name"), config.get("version"), config.get("parent")
        if isinstance(name, str) and not _NAME.fullmatch(name):
            self.problem(("name",), f"name {name!r} must be letters, digits, '_', '.' or '-', starting with a letter or digit "
                                    "(it is a folder and URL segment)")
        for key, value in (("version", version), ("parent", parent)):
            if isinstance(value, str) and not _SEMVER.fullmatch(value):
                self.problem((key,), f"{key} {value!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)")
        if (isinstance(version, str) and isinstance(parent, str) and _SEMVER.fullmatch(version)
                and _SEMVER.fullmatch(parent) and _release(parent) >= _release(version)):
            self.problem(("parent",), f"parent {parent!r} must be an earlier version than version {version!r}")

    def file_name(self, keys: tuple[str, ...], name: str, *, must_exist: bool, what: str = "") -> None:
        what = what or keys[-1]
        if not is_safe_path(name):
            self.problem(keys, f"{what} {name!r} is not a safe relative path (letters, digits, '_', '.', '-', '/')")
        elif must_exist and not (self.path.parent / name).is_file():
            present = [p.name for p in self.path.parent.iterdir() if p.suffix == Path(name).suffix]
            self.problem(keys, f"{what} {name!r} does not exist in {self.path.parent}{did_you_mean(name, present)}")

    def model(self, name: str, model: Any) -> None:
        keys = ("models", name)
        if not _KEY.fullmatch(name):
            self.problem(keys, f"model name {name!r} must be ASCII letters, digits, '_', '.' or '-', "
                               "starting with a letter or '_'")
        if not isinstance(model, dict):
            self.problem(keys, f"[models.{name}] must be a table with 'file', got {_shown(model)}")
            return
        self.table(model, keys, MODEL_KEYS)
        if isinstance(model.get("file"), str):
            self.file_name((*keys, "file"), model["file"], must_exist=False, what=f"[models.{name}] file")
        if isinstance(model.get("layout"), str) and model["layout"] not in _LAYOUTS:
            self.problem((*keys, "layout"), f"[models.{name}] layout {model['layout']!r} must be one of "
                                            f"{', '.join(map(repr, _LAYOUTS))}{did_you_mean(model['layout'], _LAYOUTS)}")
        if isinstance(model.get("sample"), dict):
            self.sample(name, model["sample"])
        if _is_str_list(model.get("execution")):
            self.execution(name, model["execution"])

    def execution(self, model: str, providers: list[str]) -> None:
        keys, known = ("models", model, "execution"), _EXECUTION_PROVIDERS
        unknown = [p for p in providers if p not in known]
        for provider in unknown:
            self.problem(keys, f"[models.{model}] execution {provider!r} must be one of "
                               f"{', '.join(map(repr, known))}{did_you_mean(provider, known)}")
        if not unknown and (len(set(providers)) != len(providers) or "wasm" not in providers):
            self.problem(keys, f"[models.{model}] execution {providers!r} must name each provider once and "
                               "include 'wasm' (where the model runs without WebGPU), e.g. [\"webgpu\", \"wasm\"]")

    def sample(self, model: str, sample: dict[str, Any]) -> None:
        keys = ("models", model, "sample")
        if not sample:
            self.problem(keys, f"[models.{model}] sample is empty: give each input of the model {{dtype, shape, fill}}")
        for name, spec in sample.items():
            where = (*keys, name)
            if not _KEY.fullmatch(name):
                self.problem(where, f"[models.{model}] sample input name {name!r} cannot be a manifest key "
                                    "(ASCII letters, digits, '_', '.' or '-')")
            if not isinstance(spec, dict):
                self.problem(where, f"[models.{model}] sample input {name!r} must be a table "
                                    f"{{ dtype = \"float32\", shape = [1, 64], fill = 0 }}, got {_shown(spec)}")
                continue
            self.table(spec, where, _SAMPLE_KEYS)
            dtype = spec.get("dtype")
            if isinstance(dtype, str) and dtype not in DTYPES:
                self.problem((*where, "dtype"), f"[models.{model}] sample input {name!r}: dtype {dtype!r} is not one of "
                                                f"{', '.join(sorted(DTYPES))}{did_you_mean(dtype, DTYPES)}")
            if _is_int_list(spec.get("shape")) and any(d < 0 for d in spec["shape"]):
                self.problem((*where, "shape"), f"[models.{model}] sample input {name!r}: shape {spec['shape']} "
                                                "must hold sizes >= 0")

    def duplicates(self, config: dict[str, Any], models: dict[str, Any]) -> None:
        seen: dict[str, str] = {}
        named = [("workflow", config.get("workflow"))]
        named += [("files", f) for f in (config["files"] if _is_str_list(config.get("files")) else [])]
        named += [(f"models.{k}.file", m.get("file")) for k, m in models.items() if isinstance(m, dict)]
        for key, file in named:
            if not isinstance(file, str):
                continue
            if file in seen:
                self.problem(tuple(key.split(".")), f"{file!r} is named twice in the bundle (by {seen[file]} and by {key})")
            seen.setdefault(file, key)

    def variant(self, name: str, variant: Any, models: dict[str, Any]) -> None:
        keys = ("variants", name)
        if not isinstance(variant, dict):
            self.problem(keys, f"[variants.{name}] must be a table, got {_shown(variant)}")
            return
        if not self.table(variant, keys, _VARIANT_KEYS) or "models" not in variant:
            return
        for model, override in variant["models"].items():
            where = (*keys, "models", model)
            if model not in models:
                self.problem(where, f"[variants.{name}] overrides model {model!r}, which [models] does not declare"
                                    f"{did_you_mean(model, models)}")
            elif not isinstance(override, dict):
                self.problem(where, f"[variants.{name}] models.{model} must be a table of model keys, got {_shown(override)}")
            else:
                self.table(override, where, {k: (check, False) for k, (check, _) in MODEL_KEYS.items()})

    def tables(self, config: dict[str, Any], section: str, spec: Spec,
               parse: Callable[[str, Any], Any]) -> None:
        """[events.*] or [features.*]: keys here (with lines), then the table's own checks."""
        tables = config.get(section)
        if not isinstance(tables, dict):
            return
        for name, table in tables.items():
            keys = (section, name)
            if not isinstance(table, dict):
                self.problem(keys, f"[{section}.{name}] must be a table, got {_shown(table)}")
                continue
            ok = self.table(table, keys, spec)
            if isinstance(table.get("retention"), dict):
                ok = self.table(table["retention"], (*keys, "retention"), _RETENTION_KEYS) and ok
            if ok:
                try:
                    parse(name, table)
                except DataError as exc:
                    self.problem(keys, str(exc))


def _release(version: str) -> tuple[int, ...]:
    match = _SEMVER.fullmatch(version)
    assert match is not None
    return tuple(int(part) for part in match.groups())


def _shown(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list", dict: "a table"}
    kind = kinds.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, (dict, list)) else kind
