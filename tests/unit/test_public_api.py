"""The public surface is explicit: every module's `__all__` is sorted and names what exists."""

import importlib
import pkgutil

import pytest

import waystation

# Every module and package, private ones too (not `__main__`, which runs the command when imported;
# not `hosts.browser`, which needs Pyodide's `js`), and the package itself.
MODULES = sorted(
    ["waystation"] + [m.name for m in pkgutil.walk_packages(waystation.__path__, "waystation.")
                      if m.name != "waystation.__main__" and "hosts.browser" not in m.name]
)


def test_the_walk_finds_the_packages():
    assert {"waystation.bundles", "waystation.cli", "waystation.device", "waystation.device._env",
            "waystation.server.sync"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name):
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{name} has no __all__: say what it offers (an empty list when nothing)"
    assert list(names) == sorted(names), f"{name}.__all__ is not sorted"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_device_package_imports_no_host_runtime():
    """Workflow code imports waystation.device; on CPython that must not need js or pyodide."""
    import subprocess
    import sys

    code = "import sys, waystation.device; print(sorted(m for m in ('js', 'pyodide', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
