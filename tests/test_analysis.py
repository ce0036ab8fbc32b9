"""Chapter-2 analyses on a hand-checkable judged dataset."""

from __future__ import annotations

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
