"""The papermill batch runner: chapter selection, parameters, types and failures (on real notebooks)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from blender_lib import runner
from blender_lib.cli import main


def _chapter(folder: Path, stem: str, params: str, body: str) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, new_code_cell(body)]
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def book(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _chapter(folder, "00_alpha", "seed = 0\nrate = 0.5\nname = 'a'", "from blender_lib.results import write_results\nwrite_results('00_alpha', {'value': seed * rate})")
    _chapter(folder, "01_beta", "seed = 0\nfail = False", "assert not fail, 'asked to fail'\nprint('beta ran')")
    return folder


def test_select_by_number_stem_and_suffix(book):
    assert [p.stem for p in runner.select_chapters(["1"], book)] == ["01_beta"]
    assert [p.stem for p in runner.select_chapters(["00_alpha", "beta"], book)] == ["00_alpha", "01_beta"]
    assert len(runner.select_chapters([], book)) == 2
    with pytest.raises(runner.RunnerError, match="unknown chapter '7'"):
        runner.select_chapters(["7"], book)


def test_parameters_go_only_to_chapters_that_declare_them(book, tmp_path):
    chapters = runner.select_chapters([], book)
    plan = runner.plan_run(chapters, {"seed": 3, "rate": 2, "01_beta": {"fail": True}}, out_dir=tmp_path / "out")
    assert plan.chapters[0].parameters == {"seed": 3, "rate": 2}  # an int is a valid float
    assert plan.chapters[1].parameters == {"seed": 3, "fail": True}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"bogus": 1}, "unknown parameter"),
        ({"seed": "three"}, "expects int"),
        ({"fail": 1}, "expects bool"),
        ({"01_beta": {"rate": 1.0}}, "unknown parameter"),
        ({"01_beta": 5}, "must be a mapping"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(book, tmp_path, params, message):
    with pytest.raises(runner.RunnerError, match=message):
        runner.plan_run(runner.select_chapters([], book), params, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_override_values_are_read_as_yaml():
    assert runner.parse_override("rate=0.25") == ("rate", 0.25)
    assert runner.parse_override("models=[a, b]") == ("models", ["a", "b"])
    with pytest.raises(runner.RunnerError, match="key=value"):
        runner.parse_override("rate")
    with pytest.raises(runner.RunnerError, match="identifier"):
        runner.parse_override("bad-name=1")


def test_parameter_files_merge_in_order(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("seed: 1\n01_beta:\n  fail: false\n")
    second.write_text("seed: 2\n01_beta:\n  extra: 1\n")
    assert runner.load_parameter_files([first, second]) == {"seed": 2, "01_beta": {"fail": False, "extra": 1}}
    with pytest.raises(runner.RunnerError, match="not found"):
        runner.load_parameter_files([tmp_path / "missing.yaml"])


def test_batch_run_records_parameters_results_and_failures(book, tmp_path, monkeypatch):
    out = tmp_path / "run"
    plan = runner.plan_run(runner.select_chapters(["00"], book), {"seed": 4}, out_dir=out)
    runner.execute_plan(plan)
    record = json.loads((out / "run.json").read_text())
    assert record["chapters"][0]["status"] == "ok" and record["chapters"][0]["parameters"] == {"seed": 4}
    assert json.loads((out / "results" / "00_alpha.json").read_text()) == {"value": 2.0}
    assert (out / "00_alpha.ipynb").exists()

    failing = runner.plan_run(runner.select_chapters(["01"], book), {"fail": True}, out_dir=tmp_path / "bad")
    with pytest.raises(runner.RunnerError, match=r"chapter 01_beta failed at cell 2 .*AssertionError: asked to fail"):
        runner.execute_plan(failing)
    assert json.loads((tmp_path / "bad" / "run.json").read_text())["chapters"][0]["status"] == "failed"


def test_cli_reports_errors_with_exit_code_2(capsys):
    assert main(["run", "00", "-p", "no_such_parameter=1", "--dry-run"]) == 2
    assert "unknown parameter" in capsys.readouterr().err
    assert main(["run", "00", "--dry-run"]) == 0


@pytest.mark.parametrize("profile", ["default", "paper"])
def test_profile_files_fit_the_real_chapters(profile, tmp_path):
    from blender_lib.paths import PARAMS_DIR

    parameters = runner.load_parameter_files([PARAMS_DIR / f"{profile}.yaml"])
    plan = runner.plan_run(runner.select_chapters([]), parameters, out_dir=tmp_path / "out")
    assert [r.stem for r in plan.chapters] == [p.stem for p in runner.list_chapters()]


def test_papermill_sees_every_assignment_of_every_parameters_cell():
    # papermill silently skips a line it cannot parse (e.g. '=' inside a comment): the runner would
    # then reject that parameter as unknown, so every assignment must be declared.
    for path in runner.list_chapters():
        nb = nbformat.read(path, as_version=4)
        [cell] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assigned = {line.split("=", 1)[0].strip() for line in cell.source.splitlines() if "=" in line and not line.startswith("#")}
        assert assigned == set(runner.declared_parameters(path)), path.stem
