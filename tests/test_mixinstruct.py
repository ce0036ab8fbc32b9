"""The MixInstruct build end to end on a few seed instructions with real models (small budgets)."""

from __future__ import annotations

import pytest

from blender_lib import data
from blender_lib.mixinstruct import BuildParams, build_mixinstruct, drop_examples_with_empty_candidates, load_build

TINY_POOL = (
    {"name": "smol-greedy", "model": "smollm2-135m-instruct"},
    {"name": "smol-sample", "model": "smollm2-135m-instruct", "decoding": "sample", "temperature": 0.9},
)


def _params(**overrides) -> BuildParams:
    base = dict(
        split_sizes={"train": 4, "val": 1, "test": 2},
        pool=TINY_POOL,
        max_new_tokens=6,
        metrics=("bleu", "rouge1", "rougeL"),
        judge_splits=("test",),
    )
    return BuildParams(**{**base, **overrides})


def test_bad_build_parameters_are_named():
    with pytest.raises(ValueError, match="judge_backend"):
        _params(judge_backend="gpt-5")
    with pytest.raises(ValueError, match="judge_splits"):
        _params(judge_splits=("dev",))


def test_examples_with_an_empty_candidate_are_dropped_with_a_reason(make_example):
    ok = make_example("ok")
    empty = make_example("empty", texts=["fine", "   "])
    splits = {"test": [ok, empty]}
    skipped = drop_examples_with_empty_candidates(splits)
    assert [ex["id"] for ex in splits["test"]] == ["ok"]
    assert skipped == [("empty", "empty candidate text from model-b")]


@pytest.mark.slow
def test_build_saves_a_valid_judged_dataset_and_rebuilds_from_cache(tmp_path):
    seeds = data.load_seed_instructions()[:: 60][:7]
    params = _params()
    splits, report = build_mixinstruct(params, cache_dir=tmp_path / "cache", out_dir=tmp_path / "ds", seeds=seeds, progress=False)
    assert report.sizes == {"train": 4, "val": 1, "test": 2}
    test = splits["test"]
    assert all(len(ex["candidates"]) == 3 for ex in test)  # 2 generated + the retrieval responder
    assert all(len(ex["cmp_results"]) == 3 and len(ex["cmp_results_raw"]) == 6 for ex in test)
    assert all(ex["cmp_results"] == {} for ex in splits["train"])  # only the judged split has verdicts
    assert set(test[0]["candidates"][0]["scores"]) == {"bleu", "rouge1", "rougeL"}

    loaded, record = load_build(tmp_path / "ds")
    assert record["key"] == params.key() and loaded["test"][0]["cmp_results"] == test[0]["cmp_results"]
    assert "retrieval-minilm" in (tmp_path / "ds" / "README.md").read_text()

    # Everything is cached now: a rebuild generates, scores and judges nothing new.
    _, again = build_mixinstruct(params, cache_dir=tmp_path / "cache", out_dir=tmp_path / "ds2", seeds=seeds, progress=False)
    assert all(g["generated"] == 0 for g in again.generation.values())
    assert again.metric_pairs_computed == 0 and again.judge["from_cache"] == again.judge["requests"]


def test_candidate_backbones_name_the_model_behind_each_candidate():
    from blender_lib.generate import POOLS
    from blender_lib.mixinstruct import RETRIEVAL_MODEL_NAME, candidate_backbones

    record = {"report": {"params": {"pool": "default", "retrieval_candidate": True, "encoder": "minilm-l6"}}}
    backbones = candidate_backbones(record)
    assert backbones[RETRIEVAL_MODEL_NAME] == "minilm-l6"
    assert {c["name"]: c["model"] for c in POOLS["default"]}.items() <= backbones.items()
    record["report"]["params"]["retrieval_candidate"] = False
    assert RETRIEVAL_MODEL_NAME not in candidate_backbones(record)
