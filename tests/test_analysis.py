"""Chapter-2 analyses on a hand-checkable judged dataset."""

from __future__ import annotations

import numpy as np
import pytest

from blender_lib import analysis


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
