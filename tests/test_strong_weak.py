"""RouteLLM-style strong/weak data and the routers that score it (blender_lib.strong_weak)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender_lib import strong_weak as SW
from blender_lib.data import DataError
from blender_lib.preferences import Preference, prompt_key


def write_csv(path, rows, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(columns)] + [",".join(f'"{v}"' for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def test_gsm8k_and_mmlu_load_correctness_and_answers(tmp_path):
    columns = ["prompt", SW.WEAK, SW.STRONG, f"{SW.WEAK}_response", f"{SW.STRONG}_response"]
    write_csv(tmp_path / "routellm" / "gsm8k_responses.csv", [["1+1?", "True", "True", "2", "2"], ["3*3?", "False", "True", "6", "9"]], columns)
    for subject, rows in (("anatomy", [["Bone?", "True", "False"]]), ("virology", [["Virus?", "False", "True"], ["Cell?", "True", "True"]])):
        write_csv(tmp_path / "routellm" / "mmlu_responses" / f"mmlu_{subject}.csv", rows, ["prompt", SW.WEAK, SW.STRONG])
    gsm8k = SW.load_gsm8k(tmp_path)
    assert gsm8k.weak.tolist() == [1.0, 0.0] and gsm8k.strong.tolist() == [1.0, 1.0] and gsm8k.weak_answers == ["2", "6"]
    mmlu = SW.load_mmlu(tmp_path)
    assert mmlu.tags == ["anatomy", "virology", "virology"] and mmlu.weak.tolist() == [1.0, 0.0, 1.0]
    sample = SW.load_mmlu(tmp_path, n=2, seed=0)
    assert len(sample.prompts) == 2 and set(sample.prompts) <= set(mmlu.prompts)
    examples = gsm8k.examples()
    assert [c["model"] for c in examples[1]["candidates"]] == [SW.WEAK, SW.STRONG]
    assert [c["scores"]["quality"] for c in examples[1]["candidates"]] == [0.0, 1.0]
    assert SW.oracle_router(gsm8k).tolist() == [0.0, 1.0]


def test_bad_correctness_values_and_missing_files_are_named(tmp_path):
    write_csv(tmp_path / "routellm" / "gsm8k_responses.csv", [["1+1?", "yes", "True", "2", "2"]],
              ["prompt", SW.WEAK, SW.STRONG, f"{SW.WEAK}_response", f"{SW.STRONG}_response"])
    with pytest.raises(DataError, match="gsm8k_responses.csv row 2: expected True or False, got 'yes'"):
        SW.load_gsm8k(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no mmlu_<subject>.csv"):
        SW.load_mmlu(tmp_path)
    with pytest.raises(ValueError, match="no published weak answers"):
        SW.cascade_confidence(SW.StrongWeakData("x", ["q"], np.array([1.0]), np.array([0.0]), "share"), lambda p, a: 0.0)


def test_mt_bench_scores_average_the_two_turns(tmp_path):
    judged = tmp_path / SW.MT_BENCH_JUDGMENTS
    judged.parent.mkdir(parents=True)
    judged.write_text("\n".join(json.dumps({"question_id": 81, "model": m, "score": s, "turn": t})
                                for m, t, s in ((SW.WEAK, 1, 6), (SW.WEAK, 2, 8), (SW.STRONG, 1, 9), (SW.STRONG, 2, 10))))
    (tmp_path / "mt_bench" / "question.jsonl").write_text(json.dumps({"question_id": 81, "turns": ["Write.", "Again."]}))
    data = SW.load_mt_bench_scores(tmp_path)
    assert data.prompts == ["Write."] and data.weak.tolist() == [7.0] and data.strong.tolist() == [9.5]
    judged.write_text(json.dumps({"question_id": 81, "model": "someone-else", "score": 5, "turn": 1}))
    with pytest.raises(DataError, match="line 1: model 'someone-else'"):
        SW.load_mt_bench_scores(tmp_path)


def test_a_reward_model_never_trains_on_the_routed_prompts():
    prefs = [Preference("s", str(k), prompt_key(q), q, "a", "b", "m1", "m2", 1.0) for k, q in enumerate(["Write.", "Sum 1+1?"])]
    kept = SW.exclude_prompts(prefs, ["  write. "])  # the same prompt, spaced and cased differently
    assert [p.instruction for p in kept] == ["Sum 1+1?"]


def test_an_alpaca_eval_pair_keeps_both_answers_and_the_other_models_verdicts(tmp_path):
    from test_real_data import write_alpaca

    write_alpaca(tmp_path)
    pair = SW.load_alpaca_eval_pair(tmp_path, "mid", "strong", others=["weak"])
    # prompts 2 (weak's empty answer) and 3 (weak's failed verdict) are left out; verdicts: 2 -> 1, 1 -> 0
    assert len(pair.prompts) == 2 and pair.weak.tolist() == [1.0, 0.0] and pair.strong.tolist() == [1.0, 1.0]
    assert pair.others["weak"].tolist() == [0.0, 0.0] and pair.weak_answers == ["mid answers 0", "mid answers 1"]
    models, quality = pair.quality_matrix()
    assert models == ["mid", "strong", "weak"] and quality.shape == (2, 3)
    assert [c["text"] for c in pair.examples()[1]["candidates"]] == ["mid answers 1", "strong answers 1"]
    assert "against ref-model" in pair.unit and pair.weak_model == "mid"
    with pytest.raises(DataError, match=f"other model '{SW.STRONG}' is the weak or the strong model"):
        SW.StrongWeakData("x", ["q"], np.array([0.0]), np.array([1.0]), "share", others={SW.STRONG: np.array([1.0])})
    with pytest.raises(DataError, match="other model 'm' has 2 qualities for 1 prompts"):
        SW.StrongWeakData("x", ["q"], np.array([0.0]), np.array([1.0]), "share", others={"m": np.array([1.0, 0.0])})


def test_commercial_router_scores_leave_out_unrated_turns_as_fastchat_does(tmp_path):
    path = tmp_path / SW.MT_BENCH_ROUTER_JUDGMENTS
    path.parent.mkdir(parents=True)
    rows = [("martian", 81, 1, 8), ("martian", 81, 2, 9), ("unify", 81, 1, 10), ("unify", 81, 2, -1), ("unify", 82, 1, 7)]
    path.write_text("\n".join(json.dumps({"model": m, "question_id": q, "turn": t, "score": s}) for m, q, t, s in rows))
    scores = SW.commercial_router_scores(tmp_path)
    assert scores["martian"] == {"MT-Bench score": 8.5, "rated turns": 2, "unrated turns": 0}
    assert scores["unify"] == {"MT-Bench score": 8.5, "rated turns": 2, "unrated turns": 1}


def test_the_mf_router_scores_the_strong_model_where_it_wins(tmp_path, monkeypatch):
    from blender_lib import frozen_heads as FH
    from blender_lib import reward_model as RM

    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    kinds = np.arange(60) % 2  # the strong model wins kind-1 queries, they tie on kind 0
    prompts = [f"query {n}" for n in range(60)]
    cache = RM.EmbeddingCache.open("mock", 4, root=tmp_path)
    cache.add(prompts, np.stack([np.eye(4)[k] * 3 + rng.normal(scale=0.3, size=4) for k in kinds]).astype(np.float32))
    data = SW.StrongWeakData("toy", prompts, np.zeros(60), kinds.astype(float), "share")
    settings = FH.HeadSettings(hidden=0, epochs=40, batch_size=16, lr=2e-2, weight_decay=0.0, dropout=0.0)
    p = SW.mf_router_scores(data, cache, settings=settings)
    assert p[kinds == 1].min() > p[kinds == 0].max()


def test_the_ledger_prices_routers_and_cascades_at_one_share():
    from blender_lib import routing_metrics as RMX

    data = SW.StrongWeakData("toy", ["a", "b", "c", "d"], np.array([0.0, 0.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0]),
                             "share", weak_answers=["w"] * 4, strong_answers=["s"] * 4)
    scores = {"router": np.array([0.9, 0.8, 0.1, 0.2]), "Random": np.array([0.1, 0.2, 0.3, 0.4]),
              "cascade": np.array([0.9, 0.8, 0.1, 0.2]), "Oracle": np.array([1.0, 1.0, 0.0, -1.0])}
    curves = RMX.curves_by_router(scores, data.weak, data.strong)
    priced = SW.PricedRouting({SW.WEAK: 100.0, SW.STRONG: 300.0}, 1.0, 10.0, None, None, None)
    table = SW.ledger(data, curves, priced, share=0.5, cascades=["cascade"], scorer_free=["Random"], leave_out=["Oracle"])
    assert list(table.index) == ["Mixtral-8x7B-Instruct-v0.1 alone", f"{SW.STRONG} alone", "router, 50% strong",
                                 "Random, 50% strong", "cascade, 50% deferred"]
    assert table.loc["router, 50% strong"].tolist() == [1.0, 1.0, 200.0, 5.5, 1.0]  # queries 0, 1 go strong: all right
    assert table.loc["Random, 50% strong", "scorer passes / query"] == 0.0
    assert table.loc["cascade, 50% deferred"].tolist() == [1.5, 1.0, 250.0, 6.0, 1.0]
