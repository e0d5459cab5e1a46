import asyncio
import re
from pathlib import Path

import pytest

from waystation.device import ArgumentError, Workflow, WorkflowError

SCRIPT = '''
from waystation.device import export

@export
def add(ctx, a: int, b: float = 1.5) -> float:
    return a + b

@export(name="greet")
async def hello(ctx, names: list[str], loud: bool = False) -> str:
    text = ", ".join(names)
    return text.upper() if loud else text

@export
def scale(ctx, table: dict[str, list[float]], factor: float | None = None):
    return {k: [v * (factor or 1) for v in vs] for k, vs in table.items()}

def not_exported(ctx):
    return 1
'''


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    path = tmp_path / "workflow.py"
    path.write_text(SCRIPT)
    return Workflow.load(path, "test_workflow_module")


def call(workflow: Workflow, name, args):
    return asyncio.run(workflow.call(name, args, ctx=None))


def test_exports_by_decorator_and_name(workflow):
    assert workflow.describe() == {"add": ["a", "b"], "greet": ["names", "loud"], "scale": ["table", "factor"]}


def test_named_and_positional_arguments(workflow):
    assert call(workflow, "add", {"a": 2}) == 3.5
    assert call(workflow, "add", [2, 3]) == 5
    assert call(workflow, "greet", {"names": ["a", "b"], "loud": True}) == "A, B"
    assert call(workflow, "scale", {"table": {"x": [1, 2]}, "factor": 2}) == {"x": [2, 4]}
    assert call(workflow, "scale", {"table": {"x": [1]}, "factor": None}) == {"x": [1]}


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("add", {}, r"add\(\): missing a required argument: 'a'"),
        ("add", {"a": 1, "c": 2}, r"add\(\): got an unexpected keyword argument 'c'"),
        ("add", {"a": "1"}, r"add\(\): parameter 'a' expects int, got str"),
        ("add", {"a": True}, r"parameter 'a' expects int, got bool"),
        ("greet", {"names": ["a", 3]}, r"greet\(\): parameter 'names' expects list\[str\], got list"),
        ("scale", {"table": {"x": ["1"]}}, r"parameter 'table' expects dict\[str, list\[float\]\]"),
        ("add", "a=1", r"arguments must be an object of named arguments or an array"),
    ],
)
def test_wrong_arguments_name_function_and_parameter(workflow, name, args, message):
    with pytest.raises(ArgumentError, match=message):
        call(workflow, name, args)


def test_unknown_function_lists_the_exports(workflow):
    with pytest.raises(WorkflowError, match=r"no exported function 'not_exported'.*\['add', 'greet', 'scale'\]"):
        call(workflow, "not_exported", {})


def test_script_that_fails_to_import(tmp_path: Path):
    path = tmp_path / "broken.py"
    path.write_text("import does_not_exist\n")
    with pytest.raises(WorkflowError, match=re.escape("broken.py failed to import: ModuleNotFoundError")):
        Workflow.load(path, "broken_module")


def test_script_without_exports(tmp_path: Path):
    path = tmp_path / "empty.py"
    path.write_text("def f(ctx):\n    return 1\n")
    with pytest.raises(WorkflowError, match="exports no function"):
        Workflow.load(path, "empty_module")
