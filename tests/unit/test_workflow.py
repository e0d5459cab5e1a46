import asyncio
import re
from pathlib import Path

import pytest

from waystation.device import ArgumentError, Workflow, WorkflowError
from waystation.device.arguments import load_arguments
from waystation.device.errors import NoSuchFunctionError, error_code

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

@export
def grid(ctx, rows: list[list[float]], options: dict[str, list[int]] | None = None) -> int:
    return len(rows)

@export
def fail(ctx, why: str):
    raise ValueError(why)

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
    assert workflow.describe() == {"add": ["a", "b"], "greet": ["names", "loud"], "scale": ["table", "factor"],
                                   "grid": ["rows", "options"], "fail": ["why"]}


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
        ("add", {"a": "1"}, r"^add\(\): a: expected int, got str$"),
        ("add", {"a": True}, r"^add\(\): a: expected int, got bool$"),
        ("add", {"a": 1, "b": None}, r"^add\(\): b: expected float, got None$"),
        ("greet", {"names": ["a", 3]}, r"^greet\(\): names\[1\]: expected str, got int$"),
        ("greet", {"names": "ab"}, r"^greet\(\): names: expected list\[str\], got str$"),
        ("scale", {"table": {"x": [1, "1"]}}, r"^scale\(\): table\['x'\]\[1\]: expected float, got str$"),
        ("scale", {"table": {"x": 1}}, r"^scale\(\): table\['x'\]: expected list\[float\], got int$"),
        ("scale", {"table": [1]}, r"^scale\(\): table: expected dict\[str, list\[float\]\], got list$"),
        ("scale", {"table": {}, "factor": "2"}, r"^scale\(\): factor: expected float \| None, got str$"),
        ("grid", {"rows": [[1.0, 2], [3, "x"]]}, r"^grid\(\): rows\[1\]\[1\]: expected float, got str$"),
        ("grid", {"rows": [[1.0], 2]}, r"^grid\(\): rows\[1\]: expected list\[float\], got int$"),
        ("grid", {"rows": [[]], "options": {"k": [1, 2.5]}},
         r"^grid\(\): options\['k'\]\[1\]: expected int, got float$"),
        ("grid", {"rows": [[]], "options": {"k": None}}, r"^grid\(\): options\['k'\]: expected list\[int\], got None$"),
        ("grid", {"rows": [[]], "options": {3: [1]}}, r"^grid\(\): options: key 3: expected str, got int$"),
        ("add", "a=1", r"arguments must be an object of named arguments or an array"),
    ],
)
def test_wrong_arguments_name_function_and_parameter(workflow, name, args, message):
    with pytest.raises(ArgumentError, match=message):
        call(workflow, name, args)


def test_unknown_function_lists_the_exports(workflow):
    exports = re.escape("['add', 'fail', 'greet', 'grid', 'scale']")
    with pytest.raises(NoSuchFunctionError, match=rf"no exported function 'not_exported'.*{exports}"):
        call(workflow, "not_exported", {})


@pytest.mark.parametrize(("script", "message"), [
    ("import does_not_exist\n", "broken.py line 1: ModuleNotFoundError: No module named 'does_not_exist'"),
    ("x = 1\n\ndef f(:\n    pass\n", "broken.py line 3: SyntaxError: invalid syntax"),
    ("def helper():\n    raise RuntimeError('no config')\n\nhelper()\n", "broken.py line 2: RuntimeError: no config"),
])
def test_a_script_that_fails_to_import_says_so_in_one_line_with_its_line(tmp_path: Path, script: str, message: str):
    path = tmp_path / "broken.py"
    path.write_text(script)
    with pytest.raises(WorkflowError) as raised:
        Workflow.load(path, "broken_module")
    assert str(raised.value) == message
    assert raised.value.code == "workflow-import-failed"


def test_an_exception_of_the_workflow_keeps_its_type_and_is_marked_as_the_workflow_s(workflow):
    with pytest.raises(ValueError, match=r"^too dark$") as raised:
        call(workflow, "fail", {"why": "too dark"})
    assert error_code(raised.value) == "workflow-error"


@pytest.mark.parametrize(("text", "message"), [
    ('{"rows": [[1, 2, NaN]]}', "grid(): rows[0][2]: expected a finite number, got NaN (JSON has no NaN or Infinity)"),
    ('{"rows": [], "options": {"k": [Infinity]}}', "grid(): options['k'][0]: expected a finite number, got Infinity"),
    ('[[[-Infinity]]]', "grid(): args[0][0][0]: expected a finite number, got -Infinity"),
    ('{"rows": [[1,', "grid(): arguments is not valid JSON: Expecting value: line 1 column 14 (char 13)"),
])
def test_json_arguments_refuse_non_finite_numbers_and_bad_json_naming_where(text: str, message: str):
    with pytest.raises(ArgumentError) as raised:
        load_arguments("grid", text)
    assert str(raised.value).startswith(message)


def test_typed_arguments_refuse_a_number_that_overflows():
    with pytest.raises(ArgumentError, match=re.escape("grid(): rows[0][1]: expected a finite number, got Infinity")):
        load_arguments("grid", '{"rows": [[1.5e308, 1e999]]}', typed=True)


def test_json_arguments_read_as_json_reads_them():
    text = '{"rows": [[1, 2.5, -0.0, 1e300, 1.7976931348623157e+308]], "options": {"k": [3]}}'
    for typed in (False, True):
        assert load_arguments("grid", text, typed=typed) == {"rows": [[1, 2.5, -0.0, 1e300, 1.7976931348623157e308]],
                                                             "options": {"k": [3]}}


def test_the_path_search_does_not_run_on_the_happy_path(workflow, monkeypatch):
    import waystation.device.workflow as module

    def walked(*_args):
        raise AssertionError("walked a value that fits")

    monkeypatch.setattr(module, "_mismatch", walked)
    assert call(workflow, "grid", {"rows": [[1.0, 2]] * 100, "options": {"a": [1]}}) == 100


def test_script_without_exports(tmp_path: Path):
    path = tmp_path / "empty.py"
    path.write_text("def f(ctx):\n    return 1\n")
    with pytest.raises(WorkflowError, match="exports no function"):
        Workflow.load(path, "empty_module")
