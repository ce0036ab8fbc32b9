"""Plain ``papermill`` runs with bad parameters fail in the setup cell, before any heavy work.

``blender-book run`` checks parameters before it starts a notebook (tests/test_runner.py); a user
who calls papermill directly is caught by ``setup_notebook``, which every chapter calls first after
its parameters cell: it reads the parameters cell and papermill's injected cell from the kernel's
input history and checks the injected names and types (``runner.check_injected_parameters``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from blender_lib import runner

PARAMS = 'seed = 0\nbeta = 0.3  # a weight\nname = "x"\nlimit = None  # anything goes\nflags = ["a"]\nverbose = False'
# What papermill injects for `-p beta oops` (its Python translator: "# Parameters" then assignments).
INJECTED = "# Parameters\nbeta = \"oops\"\n"
SETUP = "from blender_lib.notebook import setup_notebook\n\nsetup_notebook(seed)"


def _namespace(source: str) -> dict:
    namespace: dict = {}
    exec(source, namespace)
    return {k: v for k, v in namespace.items() if k != "__builtins__"}


def _check(*injected: str, params: str = PARAMS):
    history = ["", params, *injected, SETUP]
    namespace = _namespace("\n".join(history[:-1]))
    return runner.check_injected_parameters(history, namespace)


# -- the check itself, on a kernel history (no kernel) ------------------------------------------------

def test_good_injected_parameters_pass_and_are_returned():
    assert _check("# Parameters\nbeta = 1\nseed = 2\nlimit = [1, 2]\nverbose = True\n") == {
        "beta": 1, "seed": 2, "limit": [1, 2], "verbose": True}  # an int is a valid float; None takes anything


def test_nothing_injected_checks_nothing():
    # an interactive session, or `papermill in out` without -p: no injected cell in the history
    assert _check() == {}
    assert runner.check_injected_parameters(["", "x = 'anything'", SETUP], {"x": "anything"}) == {}


@pytest.mark.parametrize(
    "injected, message",
    [
        ("beta = 'oops'", r"^parameter 'beta' expects float \(default 0\.3\), got str 'oops'$"),
        ("seed = 1.5", r"^parameter 'seed' expects int \(default 0\), got float 1\.5$"),
        ("verbose = 1", r"^parameter 'verbose' expects bool \(default False\), got int 1$"),
        ("seed = True", r"^parameter 'seed' expects int \(default 0\), got bool True$"),
        ("flags = 'a'", r"^parameter 'flags' expects list \(default \[\"a\"\]\), got str 'a'$"),
        ("bogus = 1", r"^unknown parameter 'bogus' \(got int 1\); the parameters cell declares: seed \(int\), "
                      r"beta \(float\), name \(str\), limit \(any\), flags \(list\), verbose \(bool\)$"),
        ("bogus = 1\nbeta = 'x'", r"unknown parameter 'bogus' .*; parameter 'beta' expects float .*; the parameters"),
    ],
)
def test_bad_injected_parameters_name_the_parameter_value_and_expectation(injected, message):
    with pytest.raises(runner.ParameterError, match=message):
        _check("# Parameters\n" + injected + "\n")


def test_the_last_injection_counts_and_papermill_builtins_are_ignored():
    # re-running a papermill output notebook: its (old) injected cell follows the parameters cell again
    assert _check("# Parameters\nbeta = 'oops'\n", PARAMS, "# Parameters\nbeta = 0.5\nPAPERMILL_INPUT_PATH = 'a'\n") == {
        "beta": 0.5}


def test_a_notebook_without_parameters_cell_rejects_every_injected_name():
    # papermill injects at the top when no cell is tagged 'parameters'
    with pytest.raises(runner.ParameterError, match=r"unknown parameter 'seed' .*declares no parameters"):
        runner.check_injected_parameters(["", "# Parameters\nseed = 1\n", SETUP], {"seed": 1})


def test_runner_check_type_names_the_chapter_and_none_defaults_take_anything():
    spec = {"default": "None"}
    runner.check_type("05_zooter", "judge_base_url", 7, spec)  # None: anything (YAML would read 'None' as a str)
    with pytest.raises(runner.ParameterError, match=r"^parameter 'beta' of chapter 05_zooter expects float"):
        runner.check_type("05_zooter", "beta", "oops", {"default": "0.3"})
    assert runner.expected_type({"default": "1e-4"}) == "float"
    assert issubclass(runner.ParameterError, runner.RunnerError)


# -- for real: papermill's CLI on a tiny notebook -------------------------------------------------------

@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """A notebook with a parameters cell, the setup call, then a 'heavy' cell that writes a marker."""
    marker = tmp_path / "heavy.done"
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    heavy = new_code_cell(f"from pathlib import Path\nPath({str(marker)!r}).write_text(repr((seed, beta, limit)))")
    nb.cells = [new_markdown_cell("# Tiny"), params, new_code_cell(SETUP), heavy]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path, marker


def _papermill(notebook: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    command = [sys.executable, "-m", "papermill", str(notebook), str(notebook.with_name("out.ipynb")),
               "--no-progress-bar", "-k", "python3", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=notebook.parent, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "beta", "oops"], "ParameterError: parameter 'beta' expects float (default 0.3), got str 'oops'"),
        (["-p", "bogus", "1"], "ParameterError: unknown parameter 'bogus' (got int 1); the parameters cell declares: "
                               "seed (int), beta (float), name (str), limit (any), flags (list), verbose (bool)"),
    ],
)
def test_papermill_with_bad_parameters_fails_before_the_heavy_cell(tiny, args, message):
    notebook, marker = tiny
    done = _papermill(notebook, *args)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr, done.stderr[-3000:]
    assert not marker.exists()


def test_papermill_with_good_parameters_runs(tiny):
    notebook, marker = tiny
    done = _papermill(notebook, "-p", "beta", "1", "-p", "limit", "7")
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.read_text() == "(0, 1, 7)"


# -- every chapter validates first (no execution) ---------------------------------------------------------

def _first_statement_calls(source: str, function: str) -> bool:
    """True when ``source``'s first statement after its imports calls ``function`` (without check=False)."""
    from IPython.core.inputtransformer2 import TransformerManager

    for statement in ast.parse(TransformerManager().transform_cell(source)).body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            continue
        call = getattr(statement, "value", None)
        return (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name | ast.Attribute)
            and getattr(call.func, "id", getattr(call.func, "attr", None)) == function
            and not any(k.arg == "check" and getattr(k.value, "value", True) is False for k in call.keywords)
        )
    return False


def test_every_chapter_checks_its_parameters_first_after_the_parameters_cell():
    chapters = runner.list_chapters()
    assert chapters
    for path in chapters:
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        [index] = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
        assert index + 1 < len(cells), path.stem
        # the check finds papermill's injected cell by its first line: a parameters cell must not look like one
        assert cells[index].source.lstrip().splitlines()[0].rstrip() != runner.INJECTED_COMMENT, path.stem
        assert _first_statement_calls(cells[index + 1].source, "setup_notebook"), (
            f"{path.stem}: the first code cell after the parameters cell must call setup_notebook(...) before "
            f"anything but imports, so papermill's parameters are checked before any heavy work")


def test_the_structure_check_catches_a_late_or_disabled_setup():
    assert _first_statement_calls("import x\nfrom y import z\n\nenv = setup_notebook(seed)\nwork()", "setup_notebook")
    assert not _first_statement_calls("import x\nwork()\nsetup_notebook(seed)", "setup_notebook")
    assert not _first_statement_calls("setup_notebook(seed, check=False)", "setup_notebook")
    assert not _first_statement_calls("import x", "setup_notebook")


def _papermill_history(path: Path, parameters: dict) -> tuple[list[str], dict]:
    """The kernel history and namespace of a papermill run of ``path`` up to its setup cell (no kernel)."""
    import copy

    from papermill.parameterize import parameterize_notebook

    nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault("papermill", {})
    cells = [c for c in parameterize_notebook(copy.deepcopy(nb), parameters, kernel_name="python3",
                                              language="python").cells if c.cell_type == "code"]
    injected = next(i for i, c in enumerate(cells) if "injected-parameters" in c.metadata.get("tags", []))
    return ["", *(c.source for c in cells[: injected + 2])], _namespace("\n".join(c.source for c in cells[: injected + 1]))


@pytest.mark.parametrize("path", runner.list_chapters(), ids=lambda p: p.stem)
def test_every_chapter_accepts_its_defaults_and_rejects_bad_papermill_parameters(path):
    declared = runner.declared_parameters(path)
    defaults = {name: ast.literal_eval(spec["default"]) for name, spec in declared.items()}
    assert runner.check_injected_parameters(*_papermill_history(path, defaults)) == defaults
    with pytest.raises(runner.ParameterError, match=r"^unknown parameter 'bogus' \(got int 1\); the parameters cell "
                                                     r"declares: seed \(int\), "):
        runner.check_injected_parameters(*_papermill_history(path, {"bogus": 1}))
    with pytest.raises(runner.ParameterError, match=r"^parameter 'seed' expects int \(default 0\), got str 'oops'$"):
        runner.check_injected_parameters(*_papermill_history(path, {"seed": "oops"}))
