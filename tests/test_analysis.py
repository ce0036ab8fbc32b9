"""Analyses on hand-checkable judged datasets: chapter 2's, and the real-LLM agreement and win rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_real_data import hand_examples, verdict_pool

from blender_lib import analysis
from blender_lib.data import DataError
from blender_lib.real_data import PREF_SCORE


@pytest.fixture
def judged_examples(make_example):
    # Three candidates; "good" wins everything in ex1, "ok" and "good" tie for the top in ex2.
    ex1 = make_example("ex1", models=["good", "ok", "bad"], texts=["g1", "o1", "b1"])
    ex1["cmp_results"] = {"good,ok": "A is better", "good,bad": "A is better", "ok,bad": "A is better"}
    ex2 = make_example("ex2", models=["good", "ok", "bad"], texts=["g2", "o2", "b2"])
    ex2["cmp_results"] = {"good,ok": "Same good", "good,bad": "A is better", "ok,bad": "A is better"}
    for ex, scores in ((ex1, (0.9, 0.5, 0.1)), (ex2, (0.2, 0.8, 0.1))):
        for c, s in zip(ex["candidates"], scores):
            c["scores"] = {"bleu": s * 100, "rougeL": s}
    return [ex1, ex2]


def test_top1_shares_count_ties_for_the_top(judged_examples):
    shares = analysis.top1_shares(judged_examples)
    assert shares["good"] == 1.0 and shares["ok"] == 0.5 and shares["bad"] == 0.0
    by_bleu = analysis.top1_shares(judged_examples, by="bleu")
    assert by_bleu["good"] == 0.5 and by_bleu["ok"] == 0.5
    assert analysis.at_least_as_good_as_top(judged_examples, "good", by="bleu")["ok"] == 0.5


def test_win_rates_and_summary(judged_examples):
    rates = analysis.win_rates(judged_examples)
    assert rates.loc["good", "ok"] == pytest.approx(0.75) and rates.loc["ok", "good"] == pytest.approx(0.25)
    assert rates.index[0] == "good"
    summary = analysis.model_summary(judged_examples, ["bleu"])
    assert summary.index[0] == "good" and summary.loc["bad", "gpt_rank"] == 3


def test_oracles_and_agreement(judged_examples):
    oracles = analysis.oracle_selection(judged_examples, ["bleu", "rougeL"])
    assert oracles.loc["oracle by bleu", "bleu"] == pytest.approx((90 + 80) / 2)
    assert oracles.loc["oracle by gpt_rank", "gpt_rank"] == 1
    agreement = analysis.judge_metric_agreement(judged_examples, ["bleu"])
    # decisive verdicts: ex1 x3 (bleu agrees 3/3), ex2 x2 (good>bad agrees, ok>bad agrees) -> 5/5
    assert agreement.loc["bleu", "agreement"] == 1.0 and agreement.loc["bleu", "decisive pairs"] == 5
    assert analysis.metric_agreement_matrix(judged_examples, ["bleu", "rougeL"]).loc["bleu", "rougeL"] == 1.0


def test_verdict_distribution_counts_unparseable(judged_examples):
    judged_examples[0]["cmp_results_raw"] = {"good,ok": "A is better", "ok,good": None}
    table = analysis.verdict_distribution(judged_examples)
    assert table.loc["unparseable", "raw (one order)"] == 1
    assert table["combined (both orders)"].sum() == 6


def test_top_model_summary_names_the_top_share(judged_examples):
    shares = analysis.top1_shares(judged_examples, by="bleu").to_frame()
    sentence = analysis.top_model_summary(shares, "good", "bleu")
    assert "good has the best mean bleu" in sentence and "50%" in sentence


# -- Tables 2 and 3 of the paper, and the comparison-budget trade-off


def test_selection_table_counts_ties_as_wins_and_top_k(judged_examples):
    # ex1 GPT-Ranks good=1, ok=2, bad=3; ex2 good=1, ok=1 (tied), bad=3
    table = analysis.selection_table(judged_examples, {"pick ok": [1, 1], "pick good": [0, 0]}, ["bleu"],
                                     top_models={"gpt_rank": "good", "bleu": "good"}, rank_by=("gpt_rank", "bleu"))
    ok = table.loc["pick ok"]
    assert ok["bleu"] == pytest.approx((50 + 80) / 2)
    assert ok["GPT-Rank (mean rank)"] == pytest.approx(1.5)
    assert ok[">= good by GPT-Rank %"] == 50  # the tie in ex2 counts as a win
    assert ok["top-1 by GPT-Rank %"] == 50 and ok["top-3 by GPT-Rank %"] == 100
    assert ok[">= good by bleu %"] == 50 and table.loc["pick good", "top-1 by bleu %"] == 50
    with pytest.raises(ValueError, match="chose for 1 examples, expected 2"):
        analysis.selection_table(judged_examples, {"short": [0]}, ["bleu"], top_models={"gpt_rank": "good"})


def test_rank_correlations_official_and_per_example(judged_examples):
    perfect = [np.array([3.0, 2.0, 1.0]), np.array([2.0, 2.0, 1.0])]  # reproduces GPT-Rank exactly
    result = analysis.rank_correlations(judged_examples, perfect)
    assert result["footrule (official)"] == 0
    assert result["spearman (per example)"] == pytest.approx(1.0)
    other = [np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])]
    result = analysis.rank_correlations(judged_examples, other)
    # ex1: ranks 3,2,1 vs 1,2,3 -> 4; ex2: 3,1,2 vs 1,1,3 -> 2 + 0 + 1 = 3; mean 3.5
    assert result["footrule (official)"] == pytest.approx(3.5)
    assert result["footrule / random"] == pytest.approx(3.5 / (8 / 3))
    assert result["spearman (per example)"] < 0
    # official: per candidate slot across the 2 examples; slots 0 and 2 are constant on one side and
    # left out; slot 1 has predicted (2, 1) against GPT (2, 1)
    assert result["pearson (official)"] == pytest.approx(1.0)
    constant = [np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])]
    assert np.isnan(analysis.rank_correlations(judged_examples, constant)["pearson (official)"])
    with pytest.raises(ValueError, match="scores for 1 examples"):
        analysis.rank_correlations(judged_examples, perfect[:1])


def test_comparison_budget_curve_full_budget_equals_the_full_aggregation():
    rng = np.random.default_rng(0)
    matrices, quality = [], []
    for _ in range(30):
        q = rng.normal(size=5)
        m = (q[:, None] - q[None, :]) + rng.normal(scale=0.1, size=(5, 5))  # a good ranker
        np.fill_diagonal(m, 0)
        matrices.append(m)
        quality.append(q)
    curve = analysis.comparison_budget_curve(matrices, quality, budgets=[1, 10], repeats=3, seed=0)
    full = curve[(curve.aggregation == "max_logits") & (curve.pairs == 10)].iloc[0]
    expected = np.mean([q[np.argmax((m - m.T).sum(1))] for m, q in zip(matrices, quality)])
    assert full["quality"] == pytest.approx(expected)
    one = curve[(curve.aggregation == "max_logits") & (curve.pairs == 1)].iloc[0]
    assert one["top-1 %"] < full["top-1 %"]  # fewer comparisons, worse picks
    bubble = curve[curve.aggregation == "bubble"].iloc[0]
    assert bubble["pairs"] == 4 and bubble["model passes"] == 8
    with pytest.raises(ValueError, match="between 1 and 10"):
        analysis.comparison_budget_curve(matrices, quality, budgets=[11])


# --------------------------------------------------------------------------------------------
# real LLMs: agreement with the gold order, win rates against the reference, intervals and claims


def test_preference_agreement_on_a_hand_example():
    examples = hand_examples()
    assert [ex["cmp_results"] for ex in examples] == [{"a,b": "A is better"},
                                                      {"a,b": "B is better", "a,c": "B is better", "b,c": "Same good"}]
    scores = [np.array([3.0, 1.0, 2.0]), np.array([1.0, 2.0, 2.0])]
    # cmp_results: h0 a>b agrees; h1 b>a agrees, c>a agrees, b~c is a gold tie.
    assert analysis.preference_agreement(examples, scores) == {"agreement": 1.0, "n_pairs": 3, "n_agree": 3,
                                                               "n_gold_ties": 1, "n_method_ties": 0}
    # gpt4_pref pairs: h0 (a,b) (a,c) (b,c) all decisive and agreed; h1 (a,b) (a,c) agreed, (b,c) gold tie.
    by_pref = analysis.preference_agreement(examples, scores, gold="gpt4_pref")
    assert (by_pref["n_pairs"], by_pref["n_agree"], by_pref["n_gold_ties"]) == (5, 5, 1)
    flipped = analysis.preference_agreement(examples, [-s for s in scores])
    assert flipped["agreement"] == 0.0
    tied = analysis.preference_agreement(examples, [np.zeros(3), np.zeros(3)])
    assert tied["n_method_ties"] == 3 and math.isnan(tied["agreement"])
    with pytest.raises(ValueError, match="scores for 3 candidates"):
        analysis.preference_agreement(examples, [np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match="scores for 1 examples"):
        analysis.preference_agreement(examples, [np.zeros(3)])
    with pytest.raises(DataError, match="has no score 'bleu'"):
        analysis.preference_agreement(examples, scores, gold="bleu")


def test_win_rate_oracle_and_candidate_win_rates():
    examples = hand_examples()
    assert analysis.win_rate_vs_reference(examples, [0, 0]) == pytest.approx(50.0)
    assert analysis.win_rate_vs_reference(examples, [2, 2]) == pytest.approx(75.0)
    assert analysis.oracle_selections(examples) == [0, 1]  # h1: b and c tie at 1.0, the first wins
    assert analysis.win_rate_vs_reference(examples, analysis.oracle_selections(examples)) == pytest.approx(100.0)
    rates = analysis.candidate_win_rates(examples)
    assert list(rates.index) == ["c", "a", "b"] and rates["c"] == pytest.approx(75.0)
    with pytest.raises(ValueError, match="selection 3 is not a candidate index"):
        analysis.win_rate_vs_reference(examples, [0, 3])
    with pytest.raises(ValueError, match="2 examples"):
        analysis.win_rate_vs_reference(examples, [0])


def test_win_rate_table_with_paired_gaps():
    examples = verdict_pool(12)
    selections = {"always b": [1] * 12, "always c": [2] * 12, "oracle": analysis.oracle_selections(examples)}
    table = analysis.win_rate_table(examples, selections, against="always b", n_boot=500, seed=0)
    assert table.loc["always b", "win rate %"] == pytest.approx(analysis.win_rate_vs_reference(examples, [1] * 12))
    assert table.loc["always b", "gap to always b (pts)"] == 0 and table.loc["always b", "gap CI high"] == 0
    for name in selections:
        row = table.loc[name]
        assert row["CI low"] <= row["win rate %"] <= row["CI high"]
    assert table.loc["oracle", "gap to always b (pts)"] >= 0 and table.attrs["prompts"] == 12
    assert table.equals(analysis.win_rate_table(examples, selections, against="always b", n_boot=500, seed=0))
    with pytest.raises(ValueError, match="against='x'"):
        analysis.win_rate_table(examples, selections, against="x")
    with pytest.raises(ValueError, match="selection 7 is not a candidate index"):
        analysis.win_rate_table(examples, {"bad": [7] * 12})


def test_paired_gap_and_claim_rows():
    examples = verdict_pool(12)
    oracle = analysis.oracle_selections(examples)
    gap, low, high = analysis.paired_gap(examples, oracle, [1] * 12, n_boot=500)
    assert gap == pytest.approx(analysis.win_rate_vs_reference(examples, oracle) - analysis.win_rate_vs_reference(examples, [1] * 12))
    assert low <= gap <= high and analysis.paired_gap(examples, [1] * 12, [1] * 12) == (0.0, 0.0, 0.0)
    assert analysis.claim("x", 5.0, 1.0, 9.0)["verdict"] == "holds"
    assert analysis.claim("x", 5.0, -1.0, 9.0)["verdict"] == "within noise"
    row = analysis.claim("x", -5.0, -9.0, -1.0)
    assert row["verdict"] == "fails" and row["holds (estimate)"] is False and row["estimate"] == "-5.0 pts"
    assert analysis.claim("x", 60.0, 52.0, 70.0, threshold=50, unit="%")["verdict"] == "holds"
    assert analysis.claim("x", float("nan"), float("nan"), float("nan"))["verdict"] == "not measured"


def test_paired_agreement_gap_counts_ties_half_on_the_same_pairs():
    from blender_lib.data import make_example

    def ex(k: int, prefs: list[float]) -> dict:
        return make_example(id=f"e{k}", instruction="q", output="r", source="s", tags=["t"],
                            candidates=[{"model": f"m{i}", "decoding_method": "x", "text": f"t{i}",
                                         "scores": {PREF_SCORE: p}} for i, p in enumerate(prefs)])

    examples = [ex(0, [1.0, 0.0, 0.0]), ex(1, [0.0, 1.0, 1.0])]  # 2 decisive pairs each (the third is a tie)
    right = [np.array([3.0, 1.0, 2.0]), np.array([0.0, 2.0, 1.0])]  # orders all 4 as the gold does
    tied = [np.zeros(3), np.zeros(3)]  # ties everywhere: half credit on every pair
    gap, low, high = analysis.paired_agreement_gap(examples, right, tied, gold=PREF_SCORE, n_boot=200)
    assert gap == pytest.approx(50.0) and low == pytest.approx(50.0) and high == pytest.approx(50.0)
    assert analysis.paired_agreement_gap(examples, tied, tied, gold=PREF_SCORE)[0] == 0.0
