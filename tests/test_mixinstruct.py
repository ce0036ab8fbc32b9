"""The MixInstruct build end to end on a few seed instructions with real models (small budgets)."""

from __future__ import annotations

import json

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


def test_the_build_report_counts_requests_that_failed_after_retries(tmp_path, monkeypatch):
    """Plumbing only (no models): fake generation and metrics, a judge whose every 4th request fails."""
    import json
    import warnings

    from blender_lib import mixinstruct
    from blender_lib.generate import GenerationStats
    from blender_lib.judge import Verdict
    from blender_lib.paths import DATA_DIR

    def fake_generate(examples, pool, cache, **_):
        for ex in examples:
            ex["candidates"] = [{"model": c.name, "decoding_method": "greedy", "text": f"{c.name} says {ex['id']}",
                                 "n_tokens": 3, "scores": {}} for c in pool]
        return {c.name: GenerationStats(generated=len(examples)) for c in pool}

    class FlakyJudge:
        name = "fake-judge"

        def __init__(self, every: int | None) -> None:
            self.every, self.sent = every, 0

        def judge(self, prompts):
            verdicts = []
            for _ in prompts:
                self.sent += 1
                failed = self.every is not None and self.sent % self.every == 0
                verdicts.append(Verdict(None, "", error="HTTP 500 after 2 retries") if failed else Verdict("A is better", "1"))
            return verdicts

    judges = [FlakyJudge(4), FlakyJudge(None)]
    monkeypatch.setattr(mixinstruct, "generate_candidates", fake_generate)
    monkeypatch.setattr(mixinstruct, "score_with_cache", lambda *a, **k: (0, 0.0))
    monkeypatch.setattr(mixinstruct, "make_judge", lambda *args: (judges.pop(0), lambda: None))
    seeds = data.load_seed_instructions()[::60][:7]
    params = _params(retrieval_candidate=False)
    build = lambda out: build_mixinstruct(params, cache_dir=tmp_path / "cache", out_dir=tmp_path / out,  # noqa: E731
                                          seeds=seeds, progress=False)

    # 2 test examples x 1 pair x 2 orders = 4 requests: the 4th fails
    with pytest.warns(RuntimeWarning, match=r"Failed requests after the clients' retries: 1 judge \(1 judged pair\(s\) without"):
        _, report = build("first")
    assert report.failed_requests == {"generation": 0, "judge": 1} and report.judge["requests"] == 4
    [failure] = report.judge["failures"]
    assert failure.endswith(": HTTP 500 after 2 retries") and " of " in failure
    _, record = load_build(tmp_path / "first")
    assert record["report"]["failed_requests"] == {"generation": 0, "judge": 1}
    assert "Failed requests after the clients' retries: 1 judge" in (tmp_path / "first" / "README.md").read_text()

    # the rerun retries only the failed request; a complete build records no failed_requests at all,
    # so its build.json and card keep the shape of the committed ones
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, again = build("second")
    assert again.failed_requests == {"generation": 0, "judge": 0} and again.judge["from_cache"] == 3
    assert judges == [] and again.judge["pairs_without_verdict"] == 0
    _, record = load_build(tmp_path / "second")
    assert "failed_requests" not in record["report"]
    assert "Failed requests" not in (tmp_path / "second" / "README.md").read_text()
    committed = DATA_DIR / "mixinstruct" / "build.json"
    if committed.exists():
        stored = json.loads(committed.read_text())["report"]
        assert set(record["report"]) == set(stored) and set(record["report"]["judge"]) == set(stored["judge"])


def test_the_published_mixinstruct_loads_from_a_folder_in_the_hubs_layout(tmp_path):
    """A tiny MixInstruct written in the hub's exact JSONL layout (cmp_results a JSON string or null)."""
    from blender_lib import mixinstruct as MI

    def row(split, k, judged):
        return {"id": f"unified_chip2/{split}{k}", "instruction": "", "input": f"Question {k}?", "output": f"Answer {k}.",
                "candidates": [{"decoding_method": "top_p_sampling", "model": m, "text": f"{m} says {k}",
                                "scores": {"logprobs": -1.0, "rougeL": 0.2, "bleu": None}} for m in ("vicuna-13b-1.1", "koala-7B-HF")],
                "cmp_results": json.dumps({"vicuna-13b-1.1,koala-7B-HF": "A is better"}) if judged else None}

    for split, name in MI.PUBLISHED_FILES.items():
        (tmp_path / name).write_text("".join(json.dumps(row(split, k, k % 2 == 0)) + "\n" for k in range(6)), encoding="utf-8")
    splits = MI.load_published(str(tmp_path), {"train": 4}, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 4, "val": 6, "test": 3}  # test: the judged three
    first = splits["test"][0]
    assert first["cmp_results"] == {"vicuna-13b-1.1,koala-7B-HF": "A is better"} and first["candidates"][0]["scores"] == {
        "logprobs": -1.0, "rougeL": 0.2}  # a null score is no score
    assert MI.load_published(str(tmp_path), {"train": 4}, seed=0)["train"] == splits["train"]  # seeded
    (tmp_path / "val_data_prepared.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks \['val_data_prepared.jsonl'\]"):
        MI.load_published(str(tmp_path))


def test_a_build_written_in_the_hubs_layout_loads_back_as_it_was(tmp_path):
    from blender_lib import mixinstruct as MI
    from published_fixture import tiny_mixinstruct

    folder = tiny_mixinstruct(tmp_path / "published", {"train": 5, "val": 3, "test": 4})
    splits = MI.load_published(str(folder))
    assert {k: len(v) for k, v in splits.items()} == {"train": 5, "val": 3, "test": 4}
    again = MI.load_published(str(MI.write_published(splits, tmp_path / "again")))
    assert again == splits
    assert json.loads((folder / "test_data_prepared.jsonl").read_text().splitlines()[0])["cmp_results"].startswith("{")
    assert json.loads((folder / "train_data_prepared.jsonl").read_text().splitlines()[0])["cmp_results"] is None


def test_chapter_1_imports_the_published_mixinstruct_without_generating_or_judging(tmp_path):
    from blender_lib import mixinstruct as MI
    from published_fixture import MODELS, tiny_mixinstruct

    folder = tiny_mixinstruct(tmp_path / "published", {"train": 6, "val": 3, "test": 4})
    params = BuildParams(split_sizes={"train": 4, "val": 3, "test": 4}, metrics=("bleu", "rougeL"),
                         judge_splits=("test",), source=str(folder))
    splits, report = build_mixinstruct(params, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out")
    assert report.sizes == {"train": 4, "val": 3, "test": 4} and report.generation == {}
    assert report.judge["name"] == MI.PUBLISHED_JUDGE and report.judge["requests"] == 0
    assert report.judge["pairs"] == 4 * 10 and report.judge["pairs_without_verdict"] == 0
    assert report.judge["position_consistency"] is None  # the two orders were combined before publication
    candidate = splits["test"][0]["candidates"][0]
    published = MI.load_published(str(folder))["test"][0]["candidates"][0]["scores"]
    assert candidate["scores"]["paper_bleu"] == published["bleu"] and candidate["scores"]["logprobs"] == published["logprobs"]
    assert candidate["scores"]["bleu"] != published["bleu"]  # ours, recomputed from the text
    assert candidate["n_tokens"] > 0 and "rougeL" in candidate["scores"]
    loaded, record = load_build(tmp_path / "out")
    assert loaded == splits and record["report"]["params"]["source"] == str(folder)
    assert MI.build_params(record) == params and record["key"] == params.key()
    assert MI.candidate_parameter_counts(record)["vicuna-13b-1.1"] == 13_000_000_000
    assert list(MI.pool_table(params).index) == list(MI.PUBLISHED_MODELS) and set(MODELS) <= set(MI.PUBLISHED_MODELS)
    assert "published, llm-blender/mix-instruct" in (tmp_path / "out" / "README.md").read_text()
    assert MI.judge_table(report.judge).loc["position consistency", "value"] == "n/a"

    # the second run re-scores nothing: every metric value comes from the cache
    _, again = build_mixinstruct(params, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out")
    assert again.metric_pairs_computed == 0


def test_a_published_folder_with_foreign_candidates_is_refused_by_name(tmp_path):
    from blender_lib import mixinstruct as MI
    from published_fixture import tiny_mixinstruct

    splits = MI.load_published(str(tiny_mixinstruct(tmp_path / "published", {"train": 2, "val": 1, "test": 1})))
    splits["train"][0]["candidates"][0]["model"] = "my-own-model"
    splits["train"][0]["cmp_results"] = {}
    MI.write_published(splits, tmp_path / "foreign")
    params = BuildParams(split_sizes={"train": 2, "val": 1, "test": 1}, metrics=("bleu",), judge_splits=("test",),
                         source=str(tmp_path / "foreign"))
    with pytest.raises(data.DataError, match=r"\['my-own-model'\].*published MixInstruct"):
        build_mixinstruct(params, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="source must be None"):
        BuildParams(source="  ")


def test_the_committed_build_keeps_its_key_now_that_parameters_can_name_a_source():
    from blender_lib.mixinstruct import build_params
    from blender_lib.paths import DATA_DIR

    record = json.loads((DATA_DIR / "mixinstruct" / "build.json").read_text())
    assert "source" not in record["report"]["params"] and build_params(record).key() == record["key"]


def test_the_paper_profiles_read_the_published_mixinstruct():
    import yaml

    from blender_lib.paths import PARAMS_DIR

    paper = yaml.safe_load((PARAMS_DIR / "paper.yaml").read_text())["01_build_mixinstruct"]
    sample = yaml.safe_load((PARAMS_DIR / "paper-sample.yaml").read_text())["01_build_mixinstruct"]
    assert paper["source"] == "hub:llm-blender/mix-instruct" and paper["judge_splits"] == ["test"]
    assert set(paper["split_sizes"].values()) == {None} and sample["split_sizes"]["test"] == 1000


def test_the_published_candidates_are_the_dataset_cards_twelve_models():
    import pandas as pd

    from blender_lib.mixinstruct import PUBLISHED_MODELS
    from blender_lib.paths import shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / "mixinstruct_card" / "test_split_auto_metrics.csv").is_file():
        pytest.skip("the shared data (../shared/data/mixinstruct_card) is absent on this machine")
    rows = pd.read_csv(root / "mixinstruct_card" / "test_split_auto_metrics.csv")["model"]
    assert set(rows) - {"Best Model Metric Perf", "Oracle", "Oracle-Best_Model Gap"} == set(PUBLISHED_MODELS)
