"""The papermill batch runner: chapter selection, parameters, types and failures (on real notebooks)."""

from __future__ import annotations

import json
import os
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


def test_the_results_chapter_executes_after_the_chapters_it_reads(tmp_path):
    for stem in ("06_real", "07_results", "08_routing"):
        (tmp_path / f"{stem}.ipynb").write_text("{}")
    assert [p.stem for p in runner.list_chapters(tmp_path)] == ["06_real", "07_results", "08_routing"]  # book order
    assert [p.stem for p in runner.select_chapters([], tmp_path)] == ["06_real", "08_routing", "07_results"]
    assert [p.stem for p in runner.select_chapters(["7", "8"], tmp_path)] == ["08_routing", "07_results"]


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


@pytest.mark.parametrize("profile", ["default", "paper", "paper+paper-sample"])
def test_profile_files_fit_the_real_chapters(profile, tmp_path):
    from blender_lib.paths import PARAMS_DIR

    parameters = runner.load_parameter_files([PARAMS_DIR / f"{name}.yaml" for name in profile.split("+")])
    plan = runner.plan_run(runner.select_chapters([]), parameters, out_dir=tmp_path / "out")
    assert [r.stem for r in plan.chapters] == [p.stem for p in runner.execution_order(runner.list_chapters())]


def test_papermill_sees_every_assignment_of_every_parameters_cell():
    # papermill silently skips a line it cannot parse (e.g. '=' inside a comment): the runner would
    # then reject that parameter as unknown, so every assignment must be declared.
    for path in runner.list_chapters():
        nb = nbformat.read(path, as_version=4)
        [cell] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assigned = {line.split("=", 1)[0].strip() for line in cell.source.splitlines() if "=" in line and not line.startswith("#")}
        assert assigned == set(runner.declared_parameters(path)), path.stem


# --------------------------------------------------------------------------------------------
# preflight: every problem at once, and chapters whose inputs are absent keep their stored notebooks


def _needs(path: Path, **meta) -> Path:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["blender_book"] = meta
    nbformat.write(nb, path)
    return path


@pytest.fixture
def no_real_data(tmp_path, monkeypatch) -> Path:
    """A machine without the real data: the variable names an empty folder, nothing was fetched."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("BLENDER_BOOK_SHARED_DATA", str(empty))
    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    return empty


def test_a_chapter_without_its_real_data_is_kept_not_run(book, tmp_path, no_real_data):
    _needs(book / "01_beta.ipynb", real_data=["alpaca_eval"], data_parameter="data")
    nb = nbformat.read(book / "01_beta.ipynb", as_version=4)
    nb.cells[0].source += "\ndata = None"
    nbformat.write(nb, book / "01_beta.ipynb")
    stored = (book / "01_beta.ipynb").read_bytes()
    plan = runner.plan_run(runner.select_chapters([], book), {"seed": 3}, out_dir=tmp_path / "out")
    assert [r.keep_reason is not None for r in plan.chapters] == [False, True]
    assert "has no alpaca_eval folder" in plan.chapters[1].keep_reason and "fetch-data" in plan.chapters[1].keep_reason
    runner.execute_plan(plan, progress=False)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [c["status"] for c in record["chapters"]] == ["ok", runner.KEPT]
    assert (tmp_path / "out" / "01_beta.ipynb").read_bytes() == stored == (book / "01_beta.ipynb").read_bytes()

    # naming a folder that is not there is the user's mistake: an error before anything runs
    with pytest.raises(runner.RunnerError, match="data='/nowhere' is not a folder"):
        runner.plan_run(runner.select_chapters(["01"], book), {"data": "/nowhere"}, out_dir=tmp_path / "bad")
    (no_real_data / "alpaca_eval").mkdir()
    (no_real_data / "alpaca_eval" / "x.jsonl").write_text("{}\n")
    plan = runner.plan_run(runner.select_chapters(["01"], book), {}, out_dir=tmp_path / "found")
    assert plan.chapters[0].keep_reason is None  # the data is there: the chapter runs


def test_every_problem_is_reported_at_once(book, tmp_path, monkeypatch):
    from blender_lib import models

    fake = models.OfflineModel(package="blender_book_no_such_package", kind="encoder", hub_id="x/y")
    monkeypatch.setitem(models.OFFLINE_MODELS, "absent-model", fake)
    _needs(book / "00_alpha.ipynb", real_data=["alpaca_eval"], data_parameter="name")
    with pytest.raises(runner.ParameterError) as err:
        runner.plan_run(runner.select_chapters([], book),
                        {"00_alpha": {"rate": "fast", "name": "/nowhere"}, "01_beta": {"bogus": 1, "seed": "absent-model"}},
                        out_dir=tmp_path / "out")
    message = str(err.value)
    assert message.startswith("5 problems, nothing was run")
    for part in ("'rate' of chapter 00_alpha expects float", "'seed' of chapter 01_beta expects int", "unknown parameter(s) ['bogus'] for chapter 01_beta",
                 "name='/nowhere' is not a folder", "blender-book-no-such-package, which is not installed"):
        assert part in message, part


def test_the_run_starts_with_an_estimate_and_records_times(book, tmp_path, monkeypatch, capsys):
    from blender_lib import preflight

    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    _needs(book / "00_alpha.ipynb", seconds={"empty_cache": 600, "warm_cache": 60})
    chapters = runner.select_chapters([], book)
    assert preflight.cache_state() == "empty_cache"
    assert preflight.estimate_seconds(chapters, "empty_cache") == (600.0, 1)  # 01_beta has no time yet
    runner.execute_plan(runner.plan_run(chapters, {}, out_dir=tmp_path / "out"), progress=False)
    assert "2 chapter(s) to run: about 10 min on this machine" in capsys.readouterr().out
    recorded = preflight.recorded_times()
    assert set(recorded) == {"00_alpha", "01_beta"} and 0 < recorded["00_alpha"]["empty_cache"] < 600
    seconds, unknown = preflight.estimate_seconds(chapters, "empty_cache")
    assert unknown == 0 and seconds < 600  # this machine's own times replace the stored ones


def test_make_book_keeps_chapter_6_without_the_real_data(no_real_data, tmp_path):
    """The CLI over the real chapter 6, real data hidden: exit 0 in seconds, the stored notebook
    untouched, the "kept" record in run.json and its stored results beside it."""
    import os
    import subprocess
    import sys
    import time

    from blender_lib.paths import NOTEBOOKS_DIR, RESULTS_DIR

    stored = (NOTEBOOKS_DIR / "06_real_llms.ipynb").read_bytes()
    start = time.perf_counter()
    for target in (["--inplace"], ["--out", str(tmp_path / "out")]):
        done = subprocess.run([sys.executable, "-m", "blender_lib.cli", "run", "06", *target],
                              capture_output=True, text=True, env=os.environ.copy(), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "06_real_llms: not re-executed, its stored notebook is kept" in done.stdout
        assert "blender-book fetch-data" in done.stdout and "BLENDER_BOOK_SHARED_DATA" in done.stdout
        assert (NOTEBOOKS_DIR / "06_real_llms.ipynb").read_bytes() == stored
    assert time.perf_counter() - start < 60
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [(c["chapter"], c["status"]) for c in record["chapters"]] == [("06_real_llms", runner.KEPT)]
    assert "no alpaca_eval, flask, llmbar folder" in record["chapters"][0]["reason"]
    assert (tmp_path / "out" / "06_real_llms.ipynb").read_bytes() == stored
    assert (tmp_path / "out" / "results" / "06_real_llms.json").read_bytes() == (RESULTS_DIR / "06_real_llms.json").read_bytes()


def test_a_chapter_pointed_at_the_users_own_data_needs_no_public_data(book, tmp_path, no_real_data):
    _needs(book / "01_beta.ipynb", real_data=["alpaca_eval"], data_parameter="data", own_data_parameter="folder")
    nb = nbformat.read(book / "01_beta.ipynb", as_version=4)
    nb.cells[0].source += "\ndata = None\nfolder = ''"
    nbformat.write(nb, book / "01_beta.ipynb")
    kept = runner.plan_run(runner.select_chapters(["01"], book), {}, out_dir=tmp_path / "sample")
    assert "has no alpaca_eval folder" in kept.chapters[0].keep_reason  # the public sample is absent: kept
    mine = runner.plan_run(runner.select_chapters(["01"], book), {"folder": str(tmp_path)}, out_dir=tmp_path / "mine")
    assert mine.chapters[0].keep_reason is None  # the user's folder replaces it: the chapter runs


def test_chapter_values_are_the_declared_defaults_overridden_by_the_profile():
    values = runner.chapter_values("03_pairranker", {"seed": 3, "03_pairranker": {"eval_split": "val"}, "04_genfuser": {"ks": [1]}})
    declared = runner.declared_parameters(runner.select_chapters(["03"])[0])
    assert set(values) == set(declared) and values["seed"] == 3 and values["eval_split"] == "val"
    assert values["pairranker"]["backbone"] == "minilm-l6"  # the declared default, parsed
    with pytest.raises(runner.ParameterError):
        runner.chapter_values("03_pairranker", {"03_pairranker": {"no_such_parameter": 1}})


def test_relative_folder_variables_are_made_absolute_before_kernels_start_in_notebooks(tmp_path, monkeypatch):
    from blender_lib import paths

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(paths.DATA_ENV_VAR, "runs/paper/data")
    monkeypatch.setenv(paths.CACHE_ENV_VAR, "~/bb-cache")
    monkeypatch.delenv(paths.SHARED_DATA_ENV_VAR, raising=False)
    runner.absolute_path_variables()
    assert os.environ[paths.DATA_ENV_VAR] == str(tmp_path.resolve() / "runs" / "paper" / "data")
    assert os.environ[paths.CACHE_ENV_VAR] == str(Path("~/bb-cache").expanduser().resolve())
    assert paths.SHARED_DATA_ENV_VAR not in os.environ  # an unset variable stays unset
