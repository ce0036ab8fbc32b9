"""The results chapter's library (blender_lib.book_results) on tiny fake results files: no model loads."""

from __future__ import annotations

import json
import math

import matplotlib
import pandas as pd
import pytest

from blender_lib import book_results as br
from blender_lib import plots
from blender_lib.paper import published_table
from blender_lib.results import read_results, write_results

matplotlib.use("Agg")

N = 3  # candidates per example in the fake chapters


def _row(bert: float, gpt: float, **extra: float) -> dict:
    return {"bleu": 5.0, "rougeL": 0.2, "bertscore": bert, "bartscore": -2.0, "GPT-Rank (mean rank)": gpt, **extra}


def _ided(rows: dict) -> dict:
    """Rows stored the way the chapters store them: by selector id, the label beside the numbers."""
    return {selector_id: {"label": label, **row} for (selector_id, label), row in rows.items()}


def _chapter3() -> dict:
    corr = {"spearman (official)": 0.25, "pearson (official)": 0.2, "footrule / random": 0.9}
    return {
        "eval_split": "test", "examples": 10, "candidates": N, "bubble_comparisons_per_example": float(N - 1),
        "table2": _ided({
            ("random", "Random"): _row(0.40, 2.0),
            ("best_single", "Best single on val (model-a)"): _row(0.50, 1.9),
            ("lm_scoring", "LM-scoring (stand-in)"): _row(0.42, 2.1),
            ("simcls", "SimCLS-style"): _row(0.52, 1.8),
            ("summareranker", "SummaReranker-style"): _row(0.51, 1.85),
            ("pairranker:bubble", "PairRanker (bubble)"): _row(0.55, 1.7),
            ("pairranker:max_logits", "PairRanker (max-logits)"): _row(0.55, 1.6),
            ("pairranker:max_wins", "PairRanker (max-wins)"): _row(0.54, 1.65),
            ("oracle:bertscore", "Oracle (bertscore)"): _row(0.60, 1.5),
            ("oracle:gpt_rank", "Oracle (gpt_rank)"): _row(0.45, 1.0),
        }),
        "table3_gpt_rank": _ided({("random", "Random"): {**corr, "spearman (official)": 0.0},
                                  ("pairranker:max_logits", "PairRanker (max-logits)"): corr,
                                  ("reference:rougeL", "rougeL (reads the reference)"): corr}),
        "table3_bertscore": _ided({("pairranker:max_logits", "PairRanker (max-logits)"): {"spearman (official)": 0.5}}),
        "claims": {"PairRanker beats random": True, "PairRanker beats the best single model": False},
    }


def _chapter4() -> dict:
    return {
        "eval_split": "test", "examples": 10, "models": ["model-a", "model-b", "model-c"],
        # reference metrics on every example; GPT-Rank apart, on the examples the judge saw
        "fuser_config": {"top_k": 3},
        "table": _ided({("llm_blender", "LLM-Blender (PairRanker top-3 + GenFuser)"): {"bertscore": 0.58, "bleu": 6.0},
                        ("pairranker:max_logits", "PairRanker top-1 (max-logits)"): {"bertscore": 0.55, "bleu": 5.0}}),
        "judged_table": _ided({("llm_blender", "LLM-Blender (PairRanker top-3 + GenFuser)"): {"GPT-Rank (mean rank)": 2.2},
                               ("pairranker:max_logits", "PairRanker top-1 (max-logits)"): {"GPT-Rank (mean rank)": 2.5}}),
        "judge": {"examples": 10},
        "ablation": _ided({("genfuser:top1", "GenFuser top-1"): {"bertscore": 0.5, "generated tokens / query": 20.0},
                           ("genfuser:top3", "GenFuser top-3"): {"bertscore": 0.58, "generated tokens / query": 30.0},
                           ("genfuser:random3", "GenFuser random-3"): {"bertscore": 0.52,
                                                                       "generated tokens / query": 31.0}}),
        "claims": {"fusion beats the ranker's pick": {"holds": True, "why": "more words overlap the reference"}},
    }


def _side(bert: float, calls: float, tokens: float) -> dict:
    return {"bleu": 5.0, "bertscore": bert, "GPT-Rank (mean rank)": 1.8, "LLM calls / query": calls, "generated tokens / query": tokens}


def _chapter5() -> dict:
    return {
        "eval_split": "test", "queries": 10, "models": ["model-a", "model-b", "model-c"],
        "side_by_side": _ided({
            ("router", "ZOOTER router (beta=0.3)"): _side(0.49, 1.0, 40.0),
            ("rmr", "RMR (scorer:lm)"): _side(0.50, 3.0, 120.0),
            ("best_single", "Best single on val (model-a)"): _side(0.50, 1.0, 45.0),
            ("random", "Random"): _side(0.40, 1.0, 35.0),
            ("oracle:bertscore", "Oracle (bertscore)"): _side(0.60, 3.0, 120.0),
        }),
        "claims": {"the router beats random routing": True},
    }


@pytest.fixture
def results_dir(tmp_path):
    for stem, chapter in ((br.PAIRRANKER, _chapter3()), (br.GENFUSER, _chapter4()), (br.ZOOTER, _chapter5())):
        (tmp_path / f"{stem}.json").write_text(json.dumps(chapter))
    return tmp_path


@pytest.fixture
def results(results_dir):
    return br.load_chapter_results(optional=[br.REAL_LLMS], results_dir=results_dir)


def test_loading_names_a_missing_chapter_and_skips_optional_ones(results_dir):
    loaded = br.load_chapter_results(optional=[br.REAL_LLMS], results_dir=results_dir)
    assert list(loaded) == [br.PAIRRANKER, br.GENFUSER, br.ZOOTER]
    assert br.missing_chapters(loaded) == [br.REAL_LLMS]
    overview = br.chapter_overview(loaded)
    assert overview["examples"].tolist() == [10, 10, 10] and overview["claims checked"].tolist() == [2, 1, 1]
    with pytest.raises(FileNotFoundError, match="notebooks/06_real_llms.ipynb"):
        br.load_chapter_results(results_dir=results_dir)
    with pytest.raises(ValueError, match="not among the chapters"):
        br.load_chapter_results([br.PAIRRANKER], optional=[br.REAL_LLMS], results_dir=results_dir)


def test_rows_are_found_by_selector_id_and_shown_by_their_label():
    rows = {"rmr": {"label": "RMR (scorer:lm)", "x": 1}, "random": {"x": 2}}
    assert br.row_of(rows, "rmr")["x"] == 1 and br.label_of(rows, "rmr") == "RMR (scorer:lm)"
    assert br.label_of(rows, "random") == "random"  # stored without a label: its id
    with pytest.raises(KeyError, match=r"no row 'oracle:bertscore' in ch5; rows: \['rmr', 'random'\]"):
        br.row_of(rows, "oracle:bertscore", where="ch5")


def test_headline_puts_ours_beside_the_published_row(results):
    table = br.headline_table(results)
    paper = published_table("llm_blender_table2")
    assert list(table.index) == [
        "Random", "Best single on val (model-a)", "LM-scoring (stand-in)", "SimCLS-style", "SummaReranker-style",
        "PairRanker (bubble)", "PairRanker (max-logits)", "LLM-Blender (PairRanker top-3 + GenFuser)",
        "RMR (scorer:lm)", "ZOOTER router (beta=0.3)", "Oracle (bertscore)", "Oracle (gpt_rank)"]
    row = table.loc["PairRanker (max-logits)"]
    assert row["chapter"] == br.PAIRRANKER and row["paper row"] == "PairRanker"
    assert row["BERTScore x100 (ours)"] == pytest.approx(55.0)
    assert row["BERTScore x100 (paper)"] == paper.loc["PairRanker", "bertscore"]
    assert row["gain over Random (ours)"] == pytest.approx(15.0)
    assert row["gain over Random (paper)"] == pytest.approx(paper.loc["PairRanker", "bertscore"]
                                                            - paper.loc["Random", "bertscore"])
    assert row["GPT-Rank (paper)"] == paper.loc["PairRanker", "gpt_rank"] and row["ranked among (ours)"] == N
    # chapter 4 ranks the fused answer among the candidates: N + 1 answers
    assert table.loc["LLM-Blender (PairRanker top-3 + GenFuser)", "ranked among (ours)"] == N + 1
    assert math.isnan(table.loc["RMR (scorer:lm)", "BERTScore x100 (paper)"])
    assert table.loc["LLM-Blender (PairRanker top-3 + GenFuser)", "GPT-Rank (ours)"] == 2.2  # judge saw all 10


def test_headline_takes_no_gpt_rank_from_a_judged_subset(results):
    partly = {**results, br.GENFUSER: {**results[br.GENFUSER], "judge": {"examples": 4}}}
    assert math.isnan(br.headline_table(partly).loc["LLM-Blender (PairRanker top-3 + GenFuser)", "GPT-Rank (ours)"])


def test_headline_leaves_out_chapters_not_run(results):
    table = br.headline_table({k: v for k, v in results.items() if k != br.GENFUSER})
    assert not any(name.startswith("LLM-Blender") for name in table.index)
    assert set(table["chapter"]) == {br.PAIRRANKER, br.ZOOTER}


def test_rank_correlations_scale_both_footrules_by_a_random_ranking(results):
    table = br.rank_correlation_table(results)
    paper = published_table("llm_blender_table3")
    assert list(table.index) == ["Random", "PairRanker (max-logits)"]  # rougeL: not in the paper's Table 3
    row = table.loc["PairRanker (max-logits)"]
    assert row["Spearman x100 vs GPT-Rank (ours)"] == pytest.approx(25.0)
    assert row["Spearman x100 vs GPT-Rank (paper)"] == paper.loc["PairRanker", "spearman"]
    assert row["footrule / random (paper)"] == pytest.approx(paper.loc["PairRanker", "spearman_footrule"] / (143 / 3))
    assert row["Spearman x100 vs BERTScore rank (ours)"] == pytest.approx(50.0)


def test_cost_accounting(results):
    points = br.cost_quality_points(results)
    calls = points.set_index("label")["model calls / query"].to_dict()
    assert calls == {"best single": 1, "random": 1, "ZOOTER router": 1 + 1, "RMR": N + N,
                     "PairRanker full": N + N * (N - 1), "PairRanker bubble": N + 2 * (N - 1),
                     "LLM-Blender": N + 1 + N * (N - 1), "oracle": N}
    tokens = points.set_index("label")["generated tokens / query"]
    assert tokens["RMR"] == tokens["PairRanker full"] == tokens["PairRanker bubble"] == 120.0  # chapter 5's sum over N
    assert tokens["LLM-Blender"] == 120.0 + 30.0  # + the top-3 fuser's own tokens from chapter 4's ablation
    assert tokens["ZOOTER router"] == 40.0
    assert points.loc["PairRanker (max-logits)", "bertscore"] == 0.55
    assert points.loc["LLM-Blender (PairRanker top-3 + GenFuser)", "chapter"] == br.GENFUSER
    without = br.cost_quality_points({k: v for k, v in results.items() if k != br.GENFUSER}, quality="bleu")
    assert "LLM-Blender" not in set(without["label"]) and (without["bleu"] == 5.0).all()


def test_cost_accounting_refuses_chapters_on_different_test_sets(results):
    other = dict(results)
    other[br.ZOOTER] = {**results[br.ZOOTER], "queries": 11}
    with pytest.raises(ValueError, match="examples differs"):
        br.cost_quality_points(other)
    other[br.ZOOTER] = {**results[br.ZOOTER], "models": ["a", "b"]}
    with pytest.raises(ValueError, match="N differs"):
        br.cost_quality_points(other)
    with pytest.raises(KeyError, match="05_zooter"):
        br.cost_quality_points({br.PAIRRANKER: results[br.PAIRRANKER]})
    with pytest.raises(KeyError, match="no 'bogus'"):
        br.cost_quality_points(results, quality="bogus")


def test_claims_from_every_chapter_with_reasons_where_given(results):
    claims = br.claims_table(results)
    assert list(claims.columns) == ["chapter", "claim (paper)", "holds here", "verdict", "why"]
    assert claims["verdict"].tolist() == ["holds", "fails", "holds", "holds"]
    assert claims["chapter"].tolist() == [br.PAIRRANKER, br.PAIRRANKER, br.GENFUSER, br.ZOOTER]
    assert claims["holds here"].tolist() == [True, False, True, True]
    text = br.claims_markdown(claims)
    assert "**Reproduced** (3 of 4)" in text and "**Did not reproduce** (1 of 4)" in text
    assert "- fusion beats the ranker's pick (chapter 04_genfuser): more words overlap the reference" in text
    assert "- PairRanker beats the best single model (chapter 03_pairranker)\n" in text
    assert "why" not in br.claims_table({br.ZOOTER: results[br.ZOOTER]}).columns
    with pytest.raises(ValueError, match="must be true or false"):
        br.claims_table({"x": {"claims": {"a claim": "yes"}}})


def test_chapter_tables_and_a_later_chapter(results, results_dir):
    tables = br.genfuser_tables(results)
    assert list(tables) == ["table", "judged_table", "ablation", "paper"]
    assert "GenFuser random-3" in tables["ablation"].index and "PairRanker top-3 + GenFuser" in tables["paper"].index
    assert br.zooter_table(results).loc["RMR (scorer:lm)", "LLM calls / query"] == N
    write_results(br.REAL_LLMS, {
        "pool": {"model-x": {"win rate %": 40.0}},
        "win_rates_router_subset": {"ZOOTER router": {"win rate %": 55.0}, "model-x": {"win rate %": 40.0}},
        "win_rates_flask_tags": {"no enhancement (beta 0)": {"win rate %": 50.0}},
        "models": ["model-x", "model-y"],
        "router_config": {"backbone": {"name": "x"}},
        "claims": {"the router beats random": {"holds (estimate)": True, "verdict": "within noise"},
                   "BLEU agrees with GPT-4": {"holds (estimate)": False, "verdict": "fails"}},
    }, results_dir=results_dir)
    loaded = br.load_chapter_results(results_dir=results_dir)
    tables = br.real_llms_tables(loaded)
    assert list(tables) == ["win_rates_router_subset", "win_rates_flask_tags"]
    assert tables["win_rates_router_subset"].iloc[0, 0] == 55.0
    assert list(br.real_llms_tables(loaded, keys=("missing",))) == ["pool", "win_rates_flask_tags",
                                                                     "win_rates_router_subset"]  # not configs
    assert len(br.real_llms_tables(loaded, methods_only=False)["win_rates_router_subset"]) == 2
    claims = br.claims_table(loaded)
    assert claims["verdict"].tolist()[-2:] == ["fails", "within noise"]  # results files sort their keys
    text = br.claims_markdown(claims)
    assert text.index("**Did not reproduce** (2 of 6)") < text.index("**Within noise** (1 of 6)")
    assert "- the router beats random (chapter 06_real_llms)" in text.split("**Within noise**")[1]
    with pytest.raises(KeyError, match="no table"):
        br.real_llms_tables({br.REAL_LLMS: {"claims": {}}})


def test_tables_round_trip_through_a_results_file(results, tmp_path):
    table = br.headline_table(results)
    stored = br.for_json(table)
    assert "BERTScore x100 (paper)" not in stored["RMR (scorer:lm)"]  # NaN is left out, not stored
    write_results("07_results", {"headline": stored}, results_dir=tmp_path)
    back = pd.DataFrame.from_dict(read_results("07_results", results_dir=tmp_path)["headline"], orient="index")
    assert back.loc["PairRanker (max-logits)", "BERTScore x100 (ours)"] == pytest.approx(55.0)


def test_the_cost_quality_figure_has_a_panel_per_cost(results):
    points = br.cost_quality_points(results)
    axes = plots.cost_quality(points, quality="bertscore", title="cost and quality")
    assert len(axes) == 2 and axes[0].get_xscale() == "log"
    labels = {t.get_text() for t in axes[1].texts}
    assert "PairRanker full\nPairRanker bubble" in labels  # same place in the tokens panel: one stacked label
    with pytest.raises(ValueError, match="one flag per cost column"):
        plots.cost_quality(points, quality="bertscore", title="t", log_x=(True,))
    matplotlib.pyplot.close("all")


def test_the_papers_own_table_answers_the_claims_by_both_yardsticks():
    checks = br.published_claims()
    # by GPT-Rank (the paper's argument) every claim holds; by BERTScore two do not, in the paper itself
    assert checks["by GPT-Rank (paper)"].all()
    assert not checks.loc["PairRanker beats the best single model (Open Assistant)", "by BERTScore (paper)"]
    assert not checks.loc["PairRanker beats the best pointwise reranker", "by BERTScore (paper)"]
    assert checks.loc["LLM-Blender beats PairRanker top-1", "by BERTScore (paper)"]


def test_paired_columns_for_display(results):
    table = br.paired_columns(br.headline_table(results))
    assert ("BERTScore x100", "ours") in table.columns and ("BERTScore x100", "paper") in table.columns
    assert ("chapter", "") in table.columns and ("ranked among", "ours") in table.columns


def test_one_ledger_prices_every_chapter_and_keeps_each_quality_in_its_unit(results):
    ledger = br.cost_ledger(results, flat_price_per_million_tokens=2.0).droplevel("setting")
    assert ledger.loc["RMR (scorer:lm)", br.DOLLARS] == pytest.approx(120.0 * 2.0 / 1e3)  # $ per 1,000 queries
    assert ledger.loc["RMR (scorer:lm)", br.SCORER] == N and set(ledger["quality unit"]) == {"bertscore"}
    more = {**results,
            br.REAL_LLMS: {"cost_held_out": {"Router": {"LLM calls / query": 1.0, "generated tokens / query": 300.0,
                                                        "scorer passes / query": 1}},
                           "held_out_comparison": {f"{br.ERA_POOL} | Router": {"win rate %": 74.0}}},
            br.ROUTING: {"datasets": {"GSM8K": {"unit": "correct (share)"}},
                         "ledger": {"GSM8K | router, 50% strong": {"LLM calls / query": 1.0, "scorer passes / query": 1.0,
                                                                   "generated tokens / query": 130.0, "$ / 1k queries": 2.2,
                                                                   "quality": 0.78}}}}
    ledger = br.cost_ledger(more, flat_price_per_million_tokens=2.0)
    assert ledger.xs("Router", level="method").iloc[0].tolist() == [1.0, 1.0, 300.0, 0.6, "flat $2 / 1M tokens", 74.0,
                                                                   "win rate % against text-davinci-003 (GPT-4)"]
    routed = ledger.xs("router, 50% strong", level="method")
    assert routed[br.DOLLARS].item() == 2.2 and routed["quality unit"].item() == "correct (share)"
    assert "GSM8K" in routed.index[0]
    assert "ch. 3-5: tiny local models, the default profile's test split | Random" in br.for_json(ledger)
