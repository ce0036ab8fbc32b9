"""The shared prelude of chapters 3-5: one call loads the build, keeps the judged split and scores the baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blender_lib import selectors
from blender_lib.data import save_splits
from blender_lib.evaluation import load_evaluation, top_models

from conftest import build_example

MODELS = ["m0", "m1", "m2"]
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _example(ex_id: str, bertscores: list[float], verdicts: dict[str, str] | None = None) -> dict:
    example = build_example(ex_id, models=MODELS, cmp_results=verdicts or {})
    for cand, value in zip(example["candidates"], bertscores):
        cand["scores"] = {"bertscore": value, "bleu": 100 * value}
    return example


# m2 wins every judged comparison on test; m1 has the best bertscore on test; m0 the best on val
M2_WINS = {"m0,m1": "A is better", "m0,m2": "B is better", "m1,m2": "B is better"}


def _save_build(root: Path, test_verdicts: list[dict[str, str] | None]) -> Path:
    folder = root / "mixinstruct"
    splits = {
        "train": [_example(f"t{n}", [0.5, 0.6, 0.4]) for n in range(3)],
        "val": [_example(f"v{n}", [0.9, 0.6, 0.4]) for n in range(3)],
        "test": [_example(f"x{n}", [0.5, 0.8, 0.6], v) for n, v in enumerate(test_verdicts)],
    }
    save_splits(splits, folder)
    (folder / "build.json").write_text(json.dumps({"key": "test-build"}), encoding="utf-8")
    return folder


def test_load_evaluation_keeps_the_judged_split_and_scores_the_baselines(tmp_path: Path) -> None:
    folder = _save_build(tmp_path, [M2_WINS, None, M2_WINS, M2_WINS])
    evaluation = load_evaluation("test", seed=3, quality_metric="bertscore", oracle_metrics=["bleu", "gpt_rank"],
                                 out_dir=folder)
    assert [ex["id"] for ex in evaluation.test] == ["x0", "x2", "x3"]  # x1 has no verdicts
    assert [ex["id"] for ex in evaluation.val] == ["v0", "v1", "v2"] and len(evaluation.train) == 3
    assert evaluation.models == MODELS and evaluation.record == {"key": "test-build"}
    assert evaluation.best_model == "m0"  # chosen on val, not on test (where m1 leads)
    assert evaluation.top_models == {"gpt_rank": "m2", "bertscore": "m1"}
    assert list(evaluation.baseline_scores) == ["best_single", "random", "oracle:bleu", "oracle:gpt_rank"]
    assert evaluation.baseline_labels == {"best_single": "Best single on val (m0)", "random": "Random",
                                          "oracle:bleu": "Oracle (bleu)", "oracle:gpt_rank": "Oracle (gpt_rank)"}
    expected_random = selectors.random_scores(evaluation.test, 3)
    assert all(np.array_equal(a, b) for a, b in zip(evaluation.baseline_scores["random"], expected_random))
    assert evaluation.baseline_selections() == {"best_single": [0, 0, 0], "random": [int(np.argmax(s)) for s in expected_random],
                                                "oracle:bleu": [1, 1, 1], "oracle:gpt_rank": [2, 2, 2]}


def test_load_evaluation_defaults_to_the_quality_oracle(tmp_path: Path) -> None:
    evaluation = load_evaluation(seed=0, quality_metric="bertscore", out_dir=_save_build(tmp_path, [M2_WINS]))
    assert list(evaluation.baseline_scores) == ["best_single", "random", "oracle:bertscore"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"eval_split": "dev"}, "no 'dev' split"),
    ({"oracle_metrics": "bleu"}, "non-empty list"),
    ({"oracle_metrics": []}, "non-empty list"),
])
def test_load_evaluation_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    folder = _save_build(tmp_path, [M2_WINS])
    with pytest.raises(ValueError, match=message):
        load_evaluation(seed=0, quality_metric="bertscore", out_dir=folder, **kwargs)


def test_load_evaluation_needs_judged_examples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no judged examples"):
        load_evaluation(seed=0, quality_metric="bertscore", out_dir=_save_build(tmp_path, [None, None]))


def test_top_models_breaks_quality_ties_by_gpt_rank() -> None:
    tied = [_example("x0", [0.7, 0.7, 0.7], M2_WINS)]
    assert top_models(tied, "bertscore") == {"gpt_rank": "m2", "bertscore": "m2"}


@pytest.mark.parametrize("name", ["03_pairranker", "04_genfuser", "05_zooter"])
def test_method_chapters_share_the_prelude(name: str) -> None:
    """The method chapters load and compare through the one call, not through their own copies."""
    code = "\n".join("".join(cell["source"]) for cell in json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
                     if cell["cell_type"] == "code")
    assert "load_evaluation(" in code
    for copy in ("load_build(", "best_single_model(", "model_summary(", "random_scores(", "oracle_scores("):
        assert copy not in code, f"{name} computes {copy[:-1]} itself instead of through load_evaluation"
