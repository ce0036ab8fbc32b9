"""Chapter 6's protocol (blender_lib.cross_validation): folds over prompts, the best single model on
the training folds, bubble passes and cached pair logits, decisive pairs judged by our judge, and the
cross-validated PairRanker and router on tiny models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_real_data import hand_examples, verdict_pool

from blender_lib import analysis
from blender_lib import cross_validation as CV
from blender_lib import real_data as R
from blender_lib.results import table_records


def test_folds_over_prompts_and_a_subset_keeps_them():
    examples = verdict_pool(12)
    subset = R.prompt_subset(examples, 5, seed=1)
    folds = CV.assign_folds(examples, 3, seed=0)
    assert sorted(np.bincount(list(folds.values())).tolist()) == [4, 4, 4]
    assert folds == CV.assign_folds(examples, 3, seed=0) and folds != CV.assign_folds(examples, 3, seed=1)
    by_fold = CV.fold_indices(subset, folds)  # a subset keeps the folds of the full assignment
    assert sorted(n for test in by_fold.values() for n in test) == list(range(5))
    assert all(folds[subset[n]["id"]] == f for f, test in by_fold.items() for n in test)
    with pytest.raises(ValueError, match="integer >= 2"):
        CV.assign_folds(examples, 1)
    with pytest.raises(ValueError, match="cannot fill"):
        CV.assign_folds(examples[:2], 3)
    with pytest.raises(ValueError, match="has no fold"):
        CV.fold_indices(verdict_pool(13), folds)
    with pytest.raises(ValueError, match="at least 2"):
        CV.fold_indices(examples[:1], folds)


def test_word_counts_and_best_single_selections():
    examples = verdict_pool(12)
    assert analysis.word_counts(examples)[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    folds = CV.assign_folds(examples, 2, seed=0)
    picks, chosen = CV.best_single_selections(examples, folds)
    for fold, test in CV.fold_indices(examples, folds).items():
        train = [ex for n, ex in enumerate(examples) if n not in test]
        rates = analysis.candidate_win_rates(train)
        assert chosen[fold] == rates.index[0]  # the best on the other folds only
        assert all(examples[n]["candidates"][picks[n]]["model"] == chosen[fold] for n in test)


def _quality(text: str) -> float:
    return float(len(text.split()))  # a hidden "true" quality: the longer, the better


def _fake_logits(calls: list[int]):
    def logits(triples):
        calls.append(len(triples))
        return np.array([_quality(a) - _quality(b) for _, a, b in triples])
    return logits


def test_bubble_selections_follow_the_model_in_any_order():
    examples = verdict_pool(6)
    calls: list[int] = []
    winners, used = CV.bubble_selections(examples, _fake_logits(calls), seed=0)
    assert winners == [int(np.argmax(q)) for q in analysis.word_counts(examples)]  # the best, whatever the order
    assert used == [3] * 6 and calls == [12, 12, 12]  # 3 rounds, 6 examples x both orders
    assert CV.bubble_selections(examples, _fake_logits([]), seed=5)[0] == winners
    # a model that always prefers the first slot keeps whichever incumbent the seeded order starts with
    firsts = {CV.bubble_selections(examples, lambda t: np.ones(len(t)), seed=s)[0][0] for s in range(8)}
    assert len(firsts) > 1
    with pytest.raises(ValueError, match="shape"):
        CV.bubble_selections(examples, lambda t: np.zeros(1))


def test_ranker_pair_logits_are_cached(tmp_path, monkeypatch):
    from blender_lib import rankers

    calls: list[int] = []
    monkeypatch.setattr(rankers, "score_pairs", lambda ranker, triples, batch_size=32: _fake_logits(calls)(triples))
    triples = [("q", "a b", "c"), ("q", "c", "a b"), ("q", "a b", "c")]
    logits = CV.ranker_pair_logits(object(), tmp_path / "logits.jsonl")
    assert logits(triples).tolist() == [1.0, -1.0, 1.0] and calls == [2]  # the repeated triple runs once
    again = CV.ranker_pair_logits(object(), tmp_path / "logits.jsonl")
    assert again(triples).tolist() == [1.0, -1.0, 1.0] and calls == [2]  # read back, nothing recomputed
    assert CV.ranker_pair_logits(object())(triples[:1]).tolist() == [1.0] and calls == [2, 1]  # no cache


def test_decisive_pairs_pair_examples_and_agreement():
    examples = hand_examples()
    pairs = CV.decisive_pairs(examples, seed=0)
    assert sorted(pairs) == [(0, "a", "b"), (1, "a", "b"), (1, "a", "c")]  # "b,c" is Same good: left out
    assert CV.decisive_pairs(examples, 2, seed=0) == pairs[:2]
    two = CV.pair_examples(examples, [(1, "a", "c")])[0]
    assert [c["model"] for c in two["candidates"]] == ["a", "c"] and two["cmp_results"] == {"a,c": "B is better"}
    assert two["meta"] == {"source_id": "h1"} and two["id"] == "h1|a|c"
    two["candidates"][0]["scores"]["x"] = 1.0
    assert "x" not in examples[1]["candidates"][0]["scores"]  # copies: the source example is untouched
    margins = CV.pair_margins(CV.pair_examples(examples, pairs), lambda t: np.array([1.0, -1.0] * (len(t) // 2)))
    assert [m.tolist() for m in margins] == [[1.0, -1.0]] * 3
    with pytest.raises(ValueError, match="no candidate of \\['z'\\]"):
        CV.pair_examples(examples, [(0, "a", "z")])
    with pytest.raises(ValueError, match="no gold label"):
        CV.pair_examples(examples, [(0, "a", "c")])
    table = analysis.agreement_table(CV.pair_examples(examples, pairs),
                                     {"first": [np.array([1.0, 0.0])] * 3, "ties": [np.zeros(2)] * 3})
    assert table.loc["first", "agreement %"] == pytest.approx(100 / 3) and table.loc["first", "pairs"] == 3
    assert table.loc["ties", "method ties"] == 3 and math.isnan(table.loc["ties", "agreement %"])
    assert table_records(table)["ties"]["agreement %"] is None
    low, high = analysis.wilson_interval(8, 10)
    assert 0.44 < low < 0.8 < high < 0.97 and all(math.isnan(v) for v in analysis.wilson_interval(0, 0))


class _LengthJudge:
    """Prefers the longer candidate, with option log-probabilities like LogProbJudge's."""

    name = "fake:length"

    def judge(self, prompts):
        from blender_lib.judge import LABELS, Verdict

        out = []
        for prompt in prompts:
            a = prompt.split("Candidate A: ", 1)[1].split("\nCandidate B: ", 1)[0]
            b = prompt.split("Candidate B: ", 1)[1].split("\nGiven the instruction", 1)[0]
            diff = len(a.split()) - len(b.split())
            logprobs = [-1.0 + 0.4 * diff, -1.0 - 0.4 * diff, -0.5, -3.0]  # "Same good" wins near a tie
            out.append(Verdict(LABELS[int(np.argmax(logprobs))], json.dumps({"option_logprobs": logprobs})))
        return out


def test_judge_pair_examples_gives_verdicts_and_margins(tmp_path):
    examples = verdict_pool(8)
    pairs = CV.pair_examples(examples, CV.decisive_pairs(examples, seed=0))
    judged = CV.judge_pair_examples(pairs, _LengthJudge(), tmp_path / "j.jsonl")
    lengths = analysis.word_counts(pairs)
    assert [np.sign(m[0] - m[1]) for m in judged.margins] == [np.sign(w[0] - w[1]) for w in lengths]
    decisive = [v for v in judged.verdicts if v.any()]
    assert decisive and all(v.tolist() in ([1.0, 0.0], [0.0, 1.0]) for v in judged.verdicts if v.any())
    assert judged.stats.requests == 2 * len(pairs) and judged.stats.consistency == 1.0
    assert all(len(ex["cmp_results"]) == 1 and ex["cmp_results"][next(iter(ex["cmp_results"]))] in CV.DECISIVE
               for ex in pairs)  # the gold labels are untouched
    again = CV.judge_pair_examples(pairs, _LengthJudge(), tmp_path / "j.jsonl")
    assert again.stats.from_cache == again.stats.requests and again.margins is not None
    assert CV.verdict_scores([{"id": "x", "candidates": [{"model": "a"}, {"model": "b"}],
                               "cmp_results": {"a,b": "Same bad"}}])[0].tolist() == [0.0, 0.0]


def test_cross_validated_pairranker_and_router_on_tiny_models(tmp_path, monkeypatch):
    """Both cross-validation loops end to end with a tiny random encoder: every example is ranked or
    routed by a model that never trained on it, runs are cached, and a rerun loads them."""
    from conftest import save_tiny_models

    from blender_lib import rankers, zooter

    monkeypatch.setenv("BLENDER_BOOK_CACHE", str(tmp_path / "cache"))
    examples = verdict_pool(8)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "question", *map(str, range(8))]
    encoder = save_tiny_models(tmp_path / "tiny", words, ("encoder",))["encoder"]
    folds = CV.assign_folds(examples, 2, seed=0)
    pairs = CV.pair_examples(examples, CV.decisive_pairs(examples, 3, seed=0))
    config = rankers.PairRankerConfig(backbone=str(encoder), metrics=("gpt4_pref",), source_max_length=8,
                                      candidate_max_length=8, epochs=1, batch_size=4, bf16=False, device="cpu", seed=0)
    cv = CV.cross_validate_pairranker(examples, folds, config, pairs=pairs, root=tmp_path / "runs")
    assert len(cv.selections) == 8 and cv.comparisons == [3] * 8 and sorted(cv.reports) == [0, 1]
    assert all(0 <= k < 4 for k in cv.selections) and len(cv.pair_scores) == 3
    assert all(s[0] == -s[1] for s in cv.pair_scores)
    for fold, report in cv.reports.items():
        assert report.pairs_per_epoch > 0 and Path(report.out_dir).parent == tmp_path / "runs"
    again = CV.cross_validate_pairranker(examples, folds, config, pairs=pairs, root=tmp_path / "runs")
    assert again.selections == cv.selections and all(r.train_pairs == 0 for r in again.reports.values())
    with pytest.raises(ValueError, match="has no fold"):
        CV.cross_validate_pairranker(examples, folds, config, pairs=[{**pairs[0], "meta": {"source_id": "zz"}}])

    rewards = zooter.metric_rewards(examples, "gpt4_pref")
    router_config = zooter.RouterConfig(backbone=str(encoder), source_max_length=8, epochs=1, batch_size=4,
                                        bf16=False, device="cpu", seed=0)
    routed = CV.cross_validate_router(examples, folds, rewards, router_config, tags=zooter.data_tags(examples), beta=0.3)
    assert len(routed.choices) == 8 and sorted(routed.reports) == [0, 1]
    assert routed.routed_to == [ex["candidates"][k]["model"] for ex, k in zip(examples, routed.choices)]
    with pytest.raises(ValueError, match="beta > 0 needs tags"):
        CV.cross_validate_router(examples, folds, rewards, router_config, beta=0.3)
    with pytest.raises(ValueError, match="rewards for 7 examples"):
        CV.cross_validate_router(examples, folds, rewards[:7], router_config)


def test_score_reference_metrics_fills_the_scores_and_caches_them(tmp_path):
    examples = verdict_pool(2)
    computed, _ = CV.score_reference_metrics(examples, ["bleu", "rougeL"], cache_path=tmp_path / "scores.jsonl")
    assert computed == 2 * 2 * 4  # two metrics x two prompts x four candidates
    assert all({"bleu", "rougeL", "gpt4_pref"} <= set(c["scores"]) for ex in examples for c in ex["candidates"])
    again = verdict_pool(2)
    assert CV.score_reference_metrics(again, ["bleu", "rougeL"], cache_path=tmp_path / "scores.jsonl")[0] == 0
    assert [c["scores"] for ex in again for c in ex["candidates"]] == [c["scores"] for ex in examples for c in ex["candidates"]]
