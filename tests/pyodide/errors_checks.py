"""Errors and logs inside real Pyodide, run by harness.mjs (the digits bundle at /bundle).

Each check returns what the worker would send the page for one bad input (the error reply's
code, message and Python type), so tests/pyodide/test_errors_in_pyodide.py can compare it with
what CPython says for the same input.
"""

import json
import shutil
from pathlib import Path

from waystation.device import App, _bridge
from waystation.device.arguments import load_arguments
from waystation.device.log import set_log_level

BUNDLE = "/bundle"
# name -> (function, JSON text of its arguments): the same cases the pytest side runs on CPython
CASES = {
    "type_error_with_path": ("classify_features", '{"features": [[0, 1, "x"]]}'),
    "nan": ("classify_features", '{"features": [[0, NaN]]}'),
    "workflow_exception": ("classify", '{"pixels": [0, 0, 0, 0], "width": 2, "height": 2}'),
    "no_such_function": ("nope", "{}"),
    "missing_argument": ("classify", '{"pixels": [1]}'),
}


async def reply(app, function, text):
    """What the worker's error reply says: {code, message, pythonType}, or the result."""
    try:
        return {"result": (await app.call(function, load_arguments(function, text)))["result"]}
    except Exception as exc:
        error = json.loads(_bridge._error(exc))["error"]
        return {key: error[key] for key in ("code", "message", "pythonType", "type")}


async def check_error_replies():
    app = await App.open(BUNDLE, verify=False)
    try:
        return {name: await reply(app, function, text) for name, (function, text) in CASES.items()}
    finally:
        app.close()


async def check_import_failure_is_one_line():
    broken = Path("/tmp/broken")
    shutil.rmtree(broken, ignore_errors=True)
    broken.mkdir()
    manifest = json.loads(Path(BUNDLE, "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "models": {}}))
    (broken / manifest["workflow"]).write_text("from waystation.device import export\n\ndef f(:\n    pass\n")
    try:
        await App.open(broken, verify=False)
    except Exception as exc:
        error = json.loads(_bridge._error(exc))["error"]
        return {key: error[key] for key in ("code", "message", "pythonType")}
    raise AssertionError("a broken workflow opened")


async def check_log_lines_go_to_the_console_by_level():
    import js
    from pyodide.ffi import create_proxy

    seen = []
    methods = ("debug", "info", "warn", "error")
    saved = {m: getattr(js.console, m) for m in methods}
    proxies = {m: create_proxy(lambda line, m=m: seen.append([m, line])) for m in methods}
    for m in methods:
        setattr(js.console, m, proxies[m])
    try:
        app = await App.open(BUNDLE, verify=False)
        try:
            ctx = app._context()
            for level in ("info", "debug"):
                set_log_level(level)
                ctx.log.debug("d")
                ctx.log.info("i")
                ctx.log.warning("w")
                ctx.log.error("e")
        finally:
            set_log_level("info")
            app.close()
    finally:
        for m in methods:
            setattr(js.console, m, saved[m])
            proxies[m].destroy()
    return seen
