"""Checks run inside real Pyodide by harness.mjs; tests/pyodide/test_in_pyodide.py asserts on them.

Each `check_*` coroutine returns JSON-able data (compared with the native host by pytest)
or raises. The bundle under test is mounted at /bundle.
"""

import sys

from waystation.device import App, ArgumentError, ModelError, Tensor
from waystation.device.hosts import default_host

BUNDLE = "/bundle"


async def check_runs_in_pyodide_on_the_browser_host():
    assert sys.platform == "emscripten", sys.platform
    assert default_host().name == "browser"
    return sys.version.split()[0]


async def check_device_package_needs_no_numpy():
    import importlib.util

    assert importlib.util.find_spec("numpy") is None
    return True


async def check_classify_samples():
    app = await App.open(BUNDLE)
    samples = (await app.call("samples"))["result"]
    reply = await app.call("classify_features", {"features": [s["pixels"] for s in samples]})
    app.close()
    return {"features": [s["pixels"] for s in samples], "results": reply["result"]}


async def check_model_schema_from_onnxruntime_web():
    app = await App.open(BUNDLE)
    described = app.models["classifier"].describe()
    app.close()
    return described


async def check_raw_model_outputs():
    """Probabilities straight from the model, for a float-level parity check."""
    app = await App.open(BUNDLE)
    samples = (await app.call("samples"))["result"]
    flat = [v for s in samples for v in s["pixels"]]
    out = await app.models["classifier"].run({"pixels": Tensor("float32", flat, (len(samples), 64))})
    app.close()
    assert out["label"].dtype == "int64" and out["probabilities"].shape == (len(samples), 10)
    return out["probabilities"].tolist()


async def check_wrong_feed_is_an_argument_error():
    app = await App.open(BUNDLE)
    model = app.models["classifier"]
    try:
        await model.run({"pixels": Tensor("float64", [0.0] * 64, (1, 64))})
    except ArgumentError as exc:
        assert "takes float32, got float64" in str(exc), exc
    else:
        raise AssertionError("float64 feed was accepted")
    app.close()
    return True


async def check_onnxruntime_web_errors_become_model_errors():
    host = default_host()
    try:
        await host.load_model(b"definitely not an onnx model", label="junk")
    except ModelError as exc:
        assert "model 'junk' failed to load" in str(exc), exc
    else:
        raise AssertionError("junk bytes loaded as a model")
    app = await App.open(BUNDLE)
    session = app.models["classifier"]._session
    try:  # bypass Model's checks so that onnxruntime-web itself rejects the shape
        await session.run({"pixels": Tensor("float32", [0.0] * 63, (1, 63))}, ["label"])
    except ModelError as exc:
        assert "failed to run" in str(exc), exc
    else:
        raise AssertionError("a 63-wide input ran")
    app.close()
    return True


async def check_python_error_keeps_its_type():
    app = await App.open(BUNDLE)
    try:
        await app.call("classify", {"pixels": [0.0] * 4, "width": 2, "height": 2})
    except ValueError as exc:
        return str(exc)
    finally:
        app.close()
    raise AssertionError("blank image accepted")


async def check_smoke_check_on_onnxruntime_web():
    """The check a new version passes before it becomes active on a device, on the browser host."""
    from waystation.device.smoke import smoke_check

    app = await App.open(BUNDLE)
    try:
        report = await smoke_check(app)
    finally:
        app.close()
    assert report["classifier"]["outputs"] == {"label": [1], "probabilities": [1, 10]}, report
    return report["classifier"]["outputs"]
