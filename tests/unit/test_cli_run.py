"""`waystation run`: arguments inline, from a file or stdin; one line per user error with its code and exit status;
tracebacks only with --debug or for a bug; ctx.log on stderr at INFO unless --log-level says otherwise."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from waystation.cli import LOG_LEVELS, main
from waystation.device.log import LEVELS

from bundle_factory import make_bundle

WORKFLOW = b'''
from waystation.device import export

@export
def total(ctx, rows: list[list[float]], options: dict[str, int] | None = None) -> float:
    ctx.log.debug("debug line")
    ctx.log.info("%d rows", len(rows))
    ctx.log.warning("warning line")
    return sum(sum(r) for r in rows)

@export
def fail(ctx, why: str):
    raise ValueError(why)

@export
def nan(ctx) -> float:
    return float("nan")
'''


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("run"), None, "tiny", "1.0.0", body=WORKFLOW)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_arguments_inline_from_a_file_and_from_stdin(bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    rows = [[float(i + j) for j in range(64)] for i in range(2_000)]  # ~0.9 MB of JSON: past what a shell takes inline
    expected = sum(sum(r) for r in rows)
    (tmp_path / "rows.json").write_text(json.dumps({"rows": rows}))
    assert run(capsys, "run", bundle, "total", "--args", "@" + str(tmp_path / "rows.json"))[:2] == (0, f"{expected}\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"rows": rows})))
    assert run(capsys, "run", bundle, "total", "--args", "-")[:2] == (0, f"{expected}\n")
    assert run(capsys, "run", bundle, "total", "--args", '{"rows": [[1, 2.5]]}')[:2] == (0, "3.5\n")


@pytest.mark.parametrize(("args", "status", "line"), [
    (["total", "--args", '{"rows": [[1, 2, "x"]]}'], 2,
     "error: invalid-argument: total(): rows[0][2]: expected float, got str"),
    (["total", "--args", '{"rows": [], "options": {"k": 1.5}}'], 2,
     "error: invalid-argument: total(): options['k']: expected int, got float"),
    (["total", "--args", '{"rows": [[1, NaN]]}'], 2,
     "error: invalid-argument: total(): rows[0][1]: expected a finite number, got NaN (JSON has no NaN or Infinity)"),
    (["total", "--args", '{"rows": [[1e999]]}'], 2,
     "error: invalid-argument: total(): rows[0][0]: expected a finite number, got Infinity (JSON has no NaN or Infinity)"),
    (["total", "--args", '{"rows": [[1,\n 2,]]}'], 2,
     "error: invalid-argument: total(): --args is not valid JSON: Expecting value: line 2 column 4 (char 17)"),
    (["total", "--args", "@/nonexistent/rows.json"], 2,
     "error: invalid-argument: total(): --args @/nonexistent/rows.json: cannot read /nonexistent/rows.json: "
     "No such file or directory"),
    (["nope"], 2, "error: no-such-function: no exported function 'nope'; the workflow exports ['fail', 'nan', 'total']"),
    (["fail", "--args", '{"why": "too dark"}'], 1, "error: workflow-error: ValueError: too dark"),
])
def test_a_user_error_is_one_line_with_its_code(bundle: Path, capsys, args: list[str], status: int, line: str) -> None:
    got_status, out, err = run(capsys, "run", bundle, *args)
    assert (got_status, out) == (status, "")
    assert err.splitlines()[-1] == line and "Traceback" not in err, err


def test_a_malformed_bundle_is_one_line(tmp_path: Path, capsys) -> None:
    folder = make_bundle(tmp_path, None, "broken", "1.0.0", body=b"\nx = 1\ndef f(:\n")
    status, _, err = run(capsys, "run", folder, "f")
    assert status == 1
    assert err.splitlines() == ["error: workflow-import-failed: workflow.py line 4: SyntaxError: invalid syntax"]
    (folder / "workflow.py").write_bytes(b"changed")
    status, _, err = run(capsys, "run", folder, "f")
    assert (status, err.splitlines()) == (1, ["error: bundle-error: bundle file 'workflow.py' has 7 bytes, the manifest says 30"])


def test_a_result_the_page_could_not_receive_fails_here_too(bundle: Path, capsys) -> None:
    status, out, err = run(capsys, "run", bundle, "nan")
    assert (status, out) == (1, "")
    assert err.splitlines()[-1] == ("error: workflow-error: ValueError: nan(): the result is not JSON: "
                                    "Out of range float values are not JSON compliant")


def test_debug_shows_the_traceback_before_the_line(bundle: Path, capsys) -> None:
    call = ["fail", "--args", '{"why": "x"}']
    for argv in (["--debug", "run", bundle, *call], ["run", bundle, *call, "--debug"]):
        status, _, err = run(capsys, *argv)
        assert status == 1
        assert "Traceback (most recent call last)" in err and 'raise ValueError(why)' in err
        assert err.splitlines()[-1] == "error: workflow-error: ValueError: x"


def test_a_bug_keeps_its_traceback(bundle: Path, capsys, monkeypatch) -> None:
    import waystation.cli as cli

    async def broken(*_args, **_kwargs):
        raise KeyError("a bug of Waystation's")

    monkeypatch.setattr(cli, "run_function", broken)
    with pytest.raises(KeyError, match="a bug of Waystation's"):
        main(["run", str(bundle), "total", "--args", '{"rows": []}'])


def test_log_lines_go_to_stderr_at_info_unless_told(bundle: Path, capsys) -> None:
    status, out, err = run(capsys, "run", bundle, "total", "--args", '{"rows": [[1]]}')
    assert (status, out) == (0, "1\n")
    assert err.splitlines() == ["[tiny total] INFO 1 rows", "[tiny total] WARNING warning line"]
    status, out, err = run(capsys, "run", bundle, "total", "--args", '{"rows": [[1]]}', "--log-level", "debug")
    assert err.splitlines() == ["[tiny total] DEBUG debug line", "[tiny total] INFO 1 rows", "[tiny total] WARNING warning line"]
    status, out, err = run(capsys, "run", bundle, "total", "--args", '{"rows": [[1]]}', "--log-level", "error")
    assert (status, out, err) == (0, "1\n", "")
    run(capsys, "run", bundle, "total", "--args", '{"rows": [[1]]}', "--log-level", "info")  # as the next test expects


def test_the_command_and_its_exit_status_in_a_process_of_its_own(bundle: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "waystation", "run", str(bundle), "total", "--args", "-"],
                         input='{"rows": [[1, "x"]]}', capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["error: invalid-argument: total(): rows[0][1]: expected float, got str"]
    out = subprocess.run([sys.executable, "-m", "waystation", "run", str(bundle), "total", "--args", '{"rows": [[2]]}'],
                         capture_output=True, text=True, timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (0, "2\n", "[tiny total] INFO 1 rows\n[tiny total] WARNING warning line\n")


def test_the_cli_offers_the_device_s_log_levels() -> None:
    assert LOG_LEVELS == LEVELS
