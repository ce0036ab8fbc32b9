"""Run the book's chapters in batch with papermill.

Parameters come from YAML files (``params/default.yaml``, ``params/paper.yaml``) and
``key=value`` overrides. Each chapter receives only the parameters its ``parameters`` cell
declares; a parameter that no selected chapter declares, or one of the wrong type, is an error
raised before any notebook starts.

A parameter file maps names to values; a top-level key that is a chapter stem holds values for
that chapter only::

    seed: 0                 # every chapter that declares `seed`
    03_pairranker:
      epochs: 3             # only chapter 3
"""

from __future__ import annotations

import ast
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .io import atomic_write_json
from . import paths
from .paths import NOTEBOOKS_DIR, PROJECT_ROOT, RESULTS_DIR, RESULTS_ENV_VAR


class RunnerError(RuntimeError):
    """A batch run that cannot start or did not finish; the message names chapter and cause."""


class ParameterError(RunnerError):
    """A parameter that its notebook does not declare, or one of the wrong type (names it and what was expected)."""


@dataclass
class ChapterRun:
    stem: str
    input_path: Path
    output_path: Path
    parameters: dict[str, Any]
    seconds: float | None = None
    status: str = "pending"
    error: str | None = None
    keep_reason: str | None = None  # set when the chapter's inputs are absent: its stored notebook stays


KEPT = "kept (inputs absent)"  # the status of a chapter that was not re-executed because its inputs are absent


@dataclass
class RunPlan:
    chapters: list[ChapterRun]
    out_dir: Path | None
    inplace: bool
    metadata: dict[str, Any] = field(default_factory=dict)


def list_chapters(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The chapters in book order: ``notebooks/NN_name.ipynb``."""
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


RESULTS_CHAPTER = "07_results"  # reads every other chapter's results file, so it executes after them


def execution_order(chapters: list[Path]) -> list[Path]:
    """Book order, except that the results chapter runs after every chapter it reads (chapter 8's too)."""
    return [p for p in chapters if p.stem != RESULTS_CHAPTER] + [p for p in chapters if p.stem == RESULTS_CHAPTER]


def select_chapters(names: list[str], notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Match chapter names by stem (``03_pairranker``), number (``03``/``3``) or suffix (``pairranker``),
    in :func:`execution_order`."""
    chapters = execution_order(list_chapters(notebooks_dir))
    if not names:
        return chapters
    selected: list[Path] = []
    for name in names:
        key = Path(name).stem
        matches = [
            p
            for p in chapters
            if p.stem == key
            or (key.isdigit() and int(p.stem[:2]) == int(key))
            or p.stem.split("_", 1)[1] == key
        ]
        if len(matches) != 1:
            known = ", ".join(p.stem for p in chapters)
            raise RunnerError(f"unknown chapter {name!r}; chapters are: {known}")
        if matches[0] not in selected:
            selected.append(matches[0])
    return execution_order(sorted(selected))


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``3`` is an int, ``[1, 2]`` a list, ``x`` a string)."""
    if "=" not in text:
        raise RunnerError(f"a parameter override must look like key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key.isidentifier():
        raise RunnerError(f"parameter name {key!r} in {text!r} is not a valid Python identifier")
    try:
        return key, yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise RunnerError(f"the value of override {text!r} is not valid YAML: {' '.join(str(err).split())}") from err


def load_parameter_files(paths: list[str | Path]) -> dict[str, Any]:
    """Merge parameter files in order (later files win; chapter sections merge key by key)."""
    merged: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise RunnerError(f"parameter file not found: {path}")
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise RunnerError(f"parameter file {path} is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at "
                              f"offset {err.start})") from err
        except yaml.YAMLError as err:
            raise RunnerError(f"parameter file {path} is not valid YAML: {' '.join(str(err).split())}") from err
        if not isinstance(content, dict):
            raise RunnerError(f"parameter file {path} must hold a mapping of names to values")
        for key, value in content.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def declared_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """The parameters a chapter declares in its cell tagged ``parameters`` (papermill's parser)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def parameters_in_source(source: str, *, kernel_name: str = "python3", language: str = "python") -> dict[str, dict[str, Any]]:
    """The assignments papermill's parser sees in one cell's source, in :func:`declared_parameters`' shape."""
    from nbformat.v4 import new_code_cell
    from papermill.translators import papermill_translators

    translator = papermill_translators.find_translator(kernel_name, language)
    return {p.name: p._asdict() for p in translator.inspect(new_code_cell(source))}


def _default_value(spec: dict[str, Any]) -> Any:
    """A declared default's value: a Python literal (``None``, ``True``, ``1e-4``), else read as YAML."""
    text = spec.get("default", "")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def expected_type(spec: dict[str, Any]) -> str:
    """The type name a declared parameter expects (``any`` when its default is ``None``)."""
    default = _default_value(spec)
    return "any" if default is None else type(default).__name__


def check_type(stem: str | None, name: str, value: Any, spec: dict[str, Any]) -> None:
    """Reject a value whose type clearly differs from the declared default (``None`` accepts anything).

    Raises :class:`ParameterError`; ``stem`` names the chapter in the message when known.
    """
    default = _default_value(spec)
    if default is None or value is None:
        return
    expected = type(default)
    ok = isinstance(value, expected) or (expected is float and isinstance(value, int) and not isinstance(value, bool))
    if isinstance(default, bool) != isinstance(value, bool):
        ok = False
    if not ok:
        where = f" of chapter {stem}" if stem else ""
        raise ParameterError(
            f"parameter {name!r}{where} expects {expected.__name__} (default {spec.get('default')}), "
            f"got {type(value).__name__} {value!r}"
        )


INJECTED_COMMENT = "# Parameters"  # the first line of the cell papermill injects after the parameters cell
PAPERMILL_BUILTINS = ("PAPERMILL_",)  # papermill's own --inject-paths names


def check_injected_parameters(history: list[str], namespace: dict[str, Any]) -> dict[str, Any]:
    """Check the parameters papermill injected into a running notebook against its parameters cell.

    ``history`` is the kernel's input history in execution order (IPython's ``In``); the last cell
    papermill injected (it starts with ``# Parameters``) follows the notebook's parameters cell.
    Every injected name must be declared there, and its value in ``namespace`` must have the
    declared type (:func:`check_type`). Raises :class:`ParameterError` naming each bad parameter,
    what it received and what was expected; returns the injected parameters' values (``{}`` when
    nothing was injected, e.g. in an interactive session).
    """
    injected_at = next(
        (i for i in range(len(history) - 1, -1, -1) if history[i].lstrip().split("\n", 1)[0].rstrip() == INJECTED_COMMENT),
        None,
    )
    if injected_at is None:
        return {}
    declared = parameters_in_source(history[injected_at - 1]) if injected_at > 0 else {}
    injected = [n for n in parameters_in_source(history[injected_at]) if not n.startswith(PAPERMILL_BUILTINS)]
    values = {n: namespace.get(n) for n in injected}
    problems = []
    for name, value in values.items():
        if name not in declared:
            problems.append(f"unknown parameter {name!r} (got {type(value).__name__} {value!r})")
            continue
        try:
            check_type(None, name, value, declared[name])
        except ParameterError as err:
            problems.append(str(err))
    if problems:
        if any(name not in declared for name in values):
            known = ", ".join(f"{n} ({expected_type(s)})" for n, s in declared.items())
            problems.append(f"the parameters cell declares: {known}" if known else
                            "the notebook declares no parameters (no cell tagged 'parameters')")
        raise ParameterError("; ".join(problems))
    return values


def plan_run(
    chapters: list[Path],
    parameters: dict[str, Any],
    *,
    out_dir: Path | None,
    inplace: bool = False,
) -> RunPlan:
    """Assign parameters to chapters and check everything before anything runs.

    Every problem of every selected chapter is reported at once: unknown parameters, wrong types,
    offline models whose packages are missing, a ``data_root`` that names no folder
    (:mod:`blender_lib.preflight`). A chapter whose external inputs are simply absent is not an error:
    it is marked to keep its stored executed notebook (``keep_reason``)."""
    from .preflight import check_chapter

    if inplace and out_dir is not None:
        raise RunnerError("choose either --inplace (update the stored chapters) or --out DIR, not both")
    if not inplace and out_dir is None:
        raise RunnerError("give --out DIR for the executed notebooks, or --inplace to update the stored chapters")
    if not chapters:
        raise RunnerError("no chapters to run")
    book = list_chapters(chapters[0].parent)
    all_stems = {p.stem for p in book}
    shared = {k: v for k, v in parameters.items() if k not in all_stems}
    sections = {k: v for k, v in parameters.items() if k in all_stems}
    for stem, section in sections.items():
        if not isinstance(section, dict):
            raise RunnerError(f"the section for chapter {stem} must be a mapping of names to values")
    # A shared name must exist somewhere in the book (so one profile file serves any selection);
    # chapters that do not declare it simply do not receive it.
    declared = {p.stem: declared_parameters(p) for p in book}
    problems: list[str] = []
    unknown = sorted(k for k in shared if not any(k in d for d in declared.values()))
    if unknown:
        names = {s: sorted(d) for s, d in declared.items()}
        problems.append(f"unknown parameter(s) {unknown}: no chapter declares them; declared: {names}")
    runs = []
    blocking = []
    for path in chapters:
        stem = path.stem
        section = sections.get(stem, {})
        bad = sorted(k for k in section if k not in declared[stem])
        if bad:
            problems.append(f"unknown parameter(s) {bad} for chapter {stem}; it declares {sorted(declared[stem])}")
        chosen = {k: v for k, v in shared.items() if k in declared[stem]} | {k: v for k, v in section.items() if k not in bad}
        for name, value in chosen.items():
            try:
                check_type(stem, name, value, declared[stem][name])
            except ParameterError as err:
                problems.append(str(err))
        output = path if inplace else out_dir / path.name  # type: ignore[operator]
        run = ChapterRun(stem=stem, input_path=path, output_path=output, parameters=chosen)
        effective = {name: _default_value(spec) for name, spec in declared[stem].items()} | chosen
        for finding in check_chapter(stem, path, effective):
            if finding.blocking:
                blocking.append(finding.line())
            else:
                run.keep_reason = f"{finding.problem}. Fix: {finding.fix}"
        runs.append(run)
    lines = problems + blocking
    if lines:
        message = lines[0] if len(lines) == 1 else "\n  ".join([f"{len(lines)} problems, nothing was run:", *lines])
        raise (ParameterError if problems else RunnerError)(message)
    return RunPlan(chapters=runs, out_dir=out_dir, inplace=inplace)


def chapter_values(stem: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of one chapter as a run would set it: its declared defaults, overridden by the
    profile's values (checked as :func:`plan_run` checks them)."""
    [path] = select_chapters([stem])
    plan = plan_run([path], parameters, out_dir=Path("runs/values"))  # never created: nothing executes
    defaults = {name: _default_value(spec) for name, spec in declared_parameters(path).items()}
    return {**defaults, **plan.chapters[0].parameters}


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_versions() -> dict[str, Any]:
    """Versions and hardware a run was made with (recorded beside its outputs)."""
    import importlib.metadata as md

    import torch

    from . import __version__

    packages = ["torch", "transformers", "datasets", "accelerate", "papermill", "openai", "bert-score", "jupyter-book"]
    versions = {}
    for name in packages:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "blender_lib": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        # The vector instructions torch's CPU kernels use (e.g. AVX2, AVX512): they change floating-point
        # rounding, so trained numbers can differ in their last digits from one CPU to another.
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": commit,
        "packages": versions,
    }


def strip_volatile_metadata(path: Path) -> None:
    """Remove papermill's per-run timestamps so stored chapters only change when outputs do."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def announce(plan: RunPlan, state: str) -> None:
    """One line before the run: what will run, what is kept, and the expected time."""
    from .preflight import estimate_seconds

    to_run = [r.input_path for r in plan.chapters if r.keep_reason is None]
    kept = [r.stem for r in plan.chapters if r.keep_reason is not None]
    seconds, unknown = estimate_seconds(to_run, state)
    cores = os.cpu_count() or 1
    estimate = f"about {_minutes(seconds)} on this machine ({cores} cores; the chapters' last recorded times, " \
               f"{state.replace('_', ' ')})" if seconds else "no recorded time to estimate from"
    if unknown and seconds:
        estimate += f"; {unknown} chapter(s) without a recorded time"
    kept_note = f"; {len(kept)} kept as stored ({', '.join(kept)})" if kept else ""
    print(f"[blender-book] {len(to_run)} chapter(s) to run: {estimate}{kept_note}", flush=True)


def keep_stored(run: ChapterRun, plan: RunPlan) -> None:
    """Leave a chapter's stored executed notebook as it is; a batch run copies it (and its stored
    results) into its folder so the run's output is the whole book."""
    run.status, run.seconds = KEPT, 0.0
    print(f"[blender-book] {run.stem}: not re-executed, its stored notebook is kept (inputs absent): {run.keep_reason}",
          flush=True)
    if plan.out_dir is not None:
        shutil.copyfile(run.input_path, run.output_path)
        stored = RESULTS_DIR / f"{run.stem}.json"
        if stored.is_file():
            target = paths.results_dir() / stored.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stored, target)


def execute_plan(plan: RunPlan, *, kernel_name: str = "python3", log_output: bool = False,
                 progress: bool = True) -> RunPlan:
    """Execute the chapters in order; stop at the first failure with chapter and cell named.

    Chapters whose inputs are absent keep their stored notebooks (:func:`keep_stored`). ``progress``
    shows papermill's bar per chapter (cells done / total, elapsed time); each chapter's seconds are
    recorded in the cache for the next run's estimate."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .preflight import cache_state, record_time

    if plan.out_dir is not None:
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        # Batch runs keep their numbers beside their notebooks, never over the stored results/.
        os.environ[RESULTS_ENV_VAR] = str((plan.out_dir / "results").resolve())
    absolute_path_variables()
    state = cache_state()
    plan.metadata = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "cache": state,
                     "environment": environment_versions()}
    announce(plan, state)
    try:
        for run in plan.chapters:
            if run.keep_reason is not None:
                keep_stored(run, plan)
                continue
            print(f"[blender-book] {run.stem}: running with {run.parameters or 'default parameters'}", flush=True)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(run.input_path),
                    str(run.output_path),
                    parameters=run.parameters or None,
                    kernel_name=kernel_name,
                    cwd=str(run.input_path.parent),
                    progress_bar={"desc": run.stem, "unit": "cell", "mininterval": 2.0} if progress else False,
                    log_output=log_output,
                )
            except PapermillExecutionError as err:
                run.status, run.seconds = "failed", time.perf_counter() - start
                run.error = f"cell {err.cell_index} (execution count {err.exec_count}): {err.ename}: {err.evalue}"
                raise RunnerError(f"chapter {run.stem} failed at {run.error}; see {run.output_path}") from err
            run.seconds = time.perf_counter() - start
            run.status = "ok"
            record_time(run.stem, state, run.seconds)
            if plan.inplace:
                strip_volatile_metadata(run.output_path)
            print(f"[blender-book] {run.stem}: done in {run.seconds:.1f} s", flush=True)
    finally:
        if plan.out_dir is not None:
            os.environ.pop(RESULTS_ENV_VAR, None)
            write_run_record(plan)
    return plan


PATH_VARIABLES = (paths.DATA_ENV_VAR, paths.CACHE_ENV_VAR, paths.SHARED_DATA_ENV_VAR)


def absolute_path_variables() -> None:
    """Make the folder variables absolute before any kernel starts: kernels run in notebooks/, where a
    relative ``BLENDER_BOOK_DATA_DIR=runs/paper/data`` would name another folder than the one meant."""
    for name in PATH_VARIABLES:
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).expanduser().resolve())


def write_run_record(plan: RunPlan) -> Path:
    """``run.json`` beside the executed notebooks: parameters, timings, status and versions."""
    assert plan.out_dir is not None
    record = {
        **plan.metadata,
        "chapters": [
            {
                "chapter": r.stem,
                "parameters": r.parameters,
                "seconds": None if r.seconds is None else round(r.seconds, 2),
                "status": r.status,
                "error": r.error,
                "reason": r.keep_reason,
                "output": str(r.output_path),
            }
            for r in plan.chapters
        ],
        "total_seconds": round(sum(r.seconds or 0.0 for r in plan.chapters), 2),
    }
    return atomic_write_json(plan.out_dir / "run.json", record)


def describe(plan: RunPlan) -> str:
    return json.dumps({r.stem: r.parameters for r in plan.chapters}, indent=2, default=str)
