"""The results chapter: every chapter's ``results/<stem>.json`` side by side with the published tables.

Nothing here retypes a number. Our numbers come from the chapters' results files
(:func:`blender_lib.results.read_results`), the papers' from ``data/paper_numbers``
(:func:`blender_lib.paper.published_table`). This module only picks rows, puts them beside each other
and does the cost accounting the chapters already define. Rows are found by the selectors' stable
ids (:mod:`blender_lib.selectors`: ``"best_single"``, ``"pairranker:max_logits"``, ...) and shown by
the label each chapter stored beside the id.

Cost accounting:

- LLM generations per query: 1 for one model (best single, random, the router), N for every method
  that needs all N candidates (RMR, PairRanker, LLM-Blender, the oracle), plus 1 for the fuser;
- scorer passes per query (the models that read answers or queries but generate nothing): N(N-1)
  PairRanker passes for the full comparison matrix (each pair in both orders), 2 per bubble
  comparison (N-1 comparisons), N reward-model passes for RMR, 1 router pass for ZOOTER;
- generated tokens per query: what chapter 5 measured for one model and for all N (RMR's number is
  the sum over the N candidates, reused for every method that runs all N), plus the fuser's own
  tokens from chapter 4's ablation for LLM-Blender.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .paper import published_table
from .results import read_results
from .selectors import selector_family

PAIRRANKER, GENFUSER, ZOOTER, REAL_LLMS, ROUTING = "03_pairranker", "04_genfuser", "05_zooter", "06_real_llms", "08_routing"
CHAPTERS: tuple[str, ...] = (PAIRRANKER, GENFUSER, ZOOTER, REAL_LLMS)
PAPER_GPT_RANK_CANDIDATES = 12  # candidates per example in the paper's Table 3 (data/paper_numbers/README.md)
GPT_RANK = "GPT-Rank (mean rank)"

Results = Mapping[str, Mapping[str, Any]]


# -- loading ---------------------------------------------------------------------------------------------

def load_chapter_results(chapters: Sequence[str] = CHAPTERS, *, optional: Iterable[str] = (),
                         results_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Each chapter's results by stem, in the given order.

    A missing required chapter raises :class:`FileNotFoundError` naming the notebook to run; a
    missing chapter listed in ``optional`` is left out (the caller says so in its text)."""
    optional = set(optional)
    unknown = sorted(optional - set(chapters))
    if unknown:
        raise ValueError(f"optional chapters {unknown} are not among the chapters to read {list(chapters)}")
    loaded: dict[str, dict[str, Any]] = {}
    for stem in chapters:
        try:
            loaded[stem] = read_results(stem, results_dir=results_dir)
        except FileNotFoundError:
            if stem not in optional:
                raise
    return loaded


def missing_chapters(results: Results, chapters: Sequence[str] = CHAPTERS) -> list[str]:
    """The chapters of ``chapters`` that have no results in ``results``."""
    return [stem for stem in chapters if stem not in results]


def chapter_overview(results: Results) -> pd.DataFrame:
    """One row per loaded chapter: the split it evaluated, how many examples (or queries, prompts) and
    how many of the papers' claims it checked."""
    rows = {}
    for stem, chapter in results.items():
        size = next((chapter[k] for k in ("examples", "queries", "prompts") if isinstance(chapter.get(k), int)), None)
        rows[stem] = {"split": chapter.get("eval_split", ""), "examples": size,
                      "claims checked": len(chapter.get("claims") or {})}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["split", "examples", "claims checked"])


def _require(results: Results, stem: str) -> Mapping[str, Any]:
    if stem not in results:
        raise KeyError(f"no results for chapter {stem!r}: execute notebooks/{stem}.ipynb first "
                       f"(loaded: {sorted(results)})")
    return results[stem]


def _rows(chapter: Mapping[str, Any], key: str, stem: str) -> dict[str, dict[str, Any]]:
    rows = chapter.get(key)
    if not isinstance(rows, Mapping) or not rows:
        raise KeyError(f"results of {stem} have no table {key!r} (keys: {sorted(chapter)})")
    return {str(name): dict(row) for name, row in rows.items()}


def row_of(rows: Mapping[str, Any], selector_id: str, *, where: str = "") -> dict[str, Any]:
    """The row of a selector, by its id; a clear error lists the ids there are."""
    if selector_id not in rows:
        raise KeyError(f"no row {selector_id!r}{' in ' + where if where else ''}; rows: {list(rows)}")
    return rows[selector_id]


def label_of(rows: Mapping[str, Any], selector_id: str) -> str:
    """The label a chapter shows for a selector (stored beside its id; the id itself when none is)."""
    return str(rows[selector_id].get("label", selector_id))


def _frame(rows: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Stored rows as a table shown by their labels (rows stored without one keep their key)."""
    table = pd.DataFrame.from_dict({name: {k: v for k, v in row.items() if k != "label"} for name, row in rows.items()},
                                   orient="index")
    table.index = [str(row.get("label", name)) for name, row in rows.items()]
    return table


# -- the headline table -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeadlineRow:
    """One method of the headline table: where our numbers are and which published row matches."""

    chapter: str
    table: str  # the key of the rows in the chapter's results
    selector: str  # the selector's id (blender_lib.selectors)
    paper: str | None  # the row of LLM-Blender's Table 2, or None where the paper has none


HEADLINE: tuple[HeadlineRow, ...] = (
    HeadlineRow(PAIRRANKER, "table2", "random", "Random"),
    HeadlineRow(PAIRRANKER, "table2", "best_single", "Open Assistant"),
    HeadlineRow(PAIRRANKER, "table2", "lm_scoring", "MLM-Scoring"),
    HeadlineRow(PAIRRANKER, "table2", "simcls", "SimCLS"),
    HeadlineRow(PAIRRANKER, "table2", "summareranker", "SummaReranker"),
    HeadlineRow(PAIRRANKER, "table2", "pairranker:bubble", None),
    HeadlineRow(PAIRRANKER, "table2", "pairranker:max_logits", "PairRanker"),
    HeadlineRow(GENFUSER, "table", "llm_blender", "PairRanker top-3 + GenFuser"),
    HeadlineRow(ZOOTER, "side_by_side", "rmr", None),
    HeadlineRow(ZOOTER, "side_by_side", "router", None),
    HeadlineRow(PAIRRANKER, "table2", "oracle:bertscore", "Oracle (BERTScore)"),
    HeadlineRow(PAIRRANKER, "table2", "oracle:gpt_rank", "Oracle (GPT-Rank)"),
)


def candidates_ranked(results: Results, stem: str) -> int:
    """How many answers each example's GPT-Rank ranks in a chapter: its N candidates, plus the fused
    answer in chapter 4 (the fused answer is ranked among the candidates there)."""
    chapter = _require(results, stem)
    if stem == GENFUSER and not any(key in chapter for key in ("candidates", "models")) and PAIRRANKER in results:
        return candidates_ranked(results, PAIRRANKER) + 1  # chapter 4 fuses the candidates of chapter 3's build
    for key in ("candidates", "models"):
        value = chapter.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
            break
        if isinstance(value, list) and value:
            n = len(value)
            break
    else:
        raise KeyError(f"results of {stem} record neither 'candidates' (a count) nor 'models' (a list)")
    return n + 1 if stem == GENFUSER else n


def _value(row: Mapping[str, Any], column: str, scale: float = 1.0) -> float:
    value = row.get(column)
    return float("nan") if value is None else float(value) * scale


def _judged_gpt_rank(chapter: Mapping[str, Any], selector_id: str) -> float:
    """GPT-Rank from a chapter's ``judged_table`` (chapter 4 judges the fused answers apart), used
    only when the judge saw every example of the table; NaN otherwise (not the same examples)."""
    judged = chapter.get("judged_table") or {}
    judge = chapter.get("judge") or {}
    if selector_id in judged and GPT_RANK in judged[selector_id] and judge.get("examples") == chapter.get("examples"):
        return float(judged[selector_id][GPT_RANK])
    return float("nan")


def headline_table(results: Results, *, rows: Sequence[HeadlineRow] = HEADLINE,
                   paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per method, ours beside LLM-Blender's Table 2 where it has the method.

    Rows of chapters missing from ``results`` are left out. BERTScore is x100 as in the paper; the
    gain over Random is in the same units for both (the one column comparable across scales, as our
    BERTScore model and candidates differ from the paper's). GPT-Rank is a mean rank among
    "ranked among" answers (more in the paper), so only its order within a column means something."""
    paper = published_table("llm_blender_table2") if paper is None else paper
    random_row = next((r for r in rows if r.selector == "random"), None)
    ours_random = float("nan")
    if random_row is not None and random_row.chapter in results:
        table = _rows(results[random_row.chapter], random_row.table, random_row.chapter)
        ours_random = _value(row_of(table, "random", where=random_row.chapter), "bertscore", 100)
    paper_random = float(paper.loc["Random", "bertscore"]) if "Random" in paper.index else float("nan")
    out = {}
    for spec in rows:
        if spec.chapter not in results:
            continue
        table = _rows(results[spec.chapter], spec.table, spec.chapter)
        ours = row_of(table, spec.selector, where=f"{spec.chapter} {spec.table}")
        published = paper.loc[spec.paper] if spec.paper is not None else None

        def pub(column: str, published: pd.Series | None = published) -> float:
            return float(published[column]) if published is not None and pd.notna(published[column]) else float("nan")

        bert = _value(ours, "bertscore", 100)
        gpt_rank = _value(ours, GPT_RANK) if GPT_RANK in ours else _judged_gpt_rank(results[spec.chapter], spec.selector)
        out[label_of(table, spec.selector)] = {
            "chapter": spec.chapter,
            "paper row": spec.paper or "",
            "BERTScore x100 (ours)": bert,
            "BERTScore x100 (paper)": pub("bertscore"),
            "gain over Random (ours)": bert - ours_random,
            "gain over Random (paper)": pub("bertscore") - paper_random,
            "BARTScore (ours)": _value(ours, "bartscore"),
            "BARTScore (paper)": pub("bartscore"),
            "GPT-Rank (ours)": gpt_rank,
            "GPT-Rank (paper)": pub("gpt_rank"),
            "ranked among (ours)": candidates_ranked(results, spec.chapter),
        }
    return pd.DataFrame.from_dict(out, orient="index")


# -- chapter tables beside the papers' ----------------------------------------------------------------------

TABLE3: dict[str, str] = {  # our selector id -> the row of the paper's Table 3
    "random": "Random",
    "reference:bleu": "BLEU",
    "reference:bertscore": "BERTScore",
    "reference:bartscore": "BARTScore",
    "lm_scoring": "MLM-Scoring",
    "simcls": "SimCLS",
    "summareranker": "SummaReranker",
    "pairranker:max_logits": "PairRanker",
}


def rank_correlation_table(results: Results, *, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """LLM-Blender's Table 3 (correlation with GPT-Rank, x100, the official computation) beside ours
    from chapter 3: against our judge's GPT-Rank and against the BERTScore ranking. The footrule is
    divided by a random ranking's expectation, (N^2 - 1) / 3, so that pools of different sizes compare."""
    paper = published_table("llm_blender_table3") if paper is None else paper
    chapter = _require(results, PAIRRANKER)
    by_judge = _rows(chapter, "table3_gpt_rank", PAIRRANKER)
    by_metric = chapter.get("table3_bertscore") or {}
    random_footrule = (PAPER_GPT_RANK_CANDIDATES ** 2 - 1) / 3
    out = {}
    for selector_id, paper_row in TABLE3.items():
        if selector_id not in by_judge:  # e.g. a metric the profile does not report
            continue
        ours, metric_row = by_judge[selector_id], by_metric.get(selector_id, {})
        published = paper.loc[paper_row]
        out[label_of(by_judge, selector_id)] = {
            "paper row": paper_row,
            "Spearman x100 vs GPT-Rank (ours)": _value(ours, "spearman (official)", 100),
            "Spearman x100 vs GPT-Rank (paper)": float(published["spearman"]),
            "Pearson x100 vs GPT-Rank (ours)": _value(ours, "pearson (official)", 100),
            "Pearson x100 vs GPT-Rank (paper)": float(published["pearson"]),
            "footrule / random (ours)": _value(ours, "footrule / random"),
            "footrule / random (paper)": float(published["spearman_footrule"]) / random_footrule,
            "Spearman x100 vs BERTScore rank (ours)": _value(metric_row, "spearman (official)", 100),
        }
    return pd.DataFrame.from_dict(out, orient="index")


def genfuser_tables(results: Results, *, paper: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Chapter 4 as stored: ``table`` (the reference metrics, ranks among N + 1 answers: the candidates
    and the fused one), ``judged_table`` (GPT-Rank on the judged examples) where stored, the K
    ``ablation``; ``paper``: LLM-Blender's Table 2 rows for the same comparison."""
    paper = published_table("llm_blender_table2") if paper is None else paper
    chapter = _require(results, GENFUSER)
    judged = {"judged_table": _frame(_rows(chapter, "judged_table", GENFUSER))} if chapter.get("judged_table") else {}
    return {
        "table": _frame(_rows(chapter, "table", GENFUSER)), **judged,
        "ablation": _frame(_rows(chapter, "ablation", GENFUSER)),
        "paper": paper.loc[["PairRanker top-3 + GenFuser", "PairRanker", "Open Assistant", "Random"],
                           ["bertscore", "bartscore", "gpt_rank", "top3_pct"]],
    }


def zooter_table(results: Results) -> pd.DataFrame:
    """Chapter 5's router against RMR, best single, random and oracle, as stored (the ZOOTER paper's
    per-benchmark numbers are not in ``data/paper_numbers``: its claims are compared, not its numbers)."""
    return _frame(_rows(_require(results, ZOOTER), "side_by_side", ZOOTER))


REAL_LLMS_KEYS: tuple[str, ...] = ("held_out_comparison", "win_rates_reward_model", "win_rates_router_subset", "win_rates_pairranker_subset", "win_rates_flask_tags",
                                   "cost", "table", "side_by_side")


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, Mapping) for v in value.values())


def real_llms_tables(results: Results, keys: Sequence[str] = REAL_LLMS_KEYS, *,
                     methods_only: bool = True) -> dict[str, pd.DataFrame]:
    """Chapter 6's tables (real LLM outputs judged by GPT-4) as stored: those of ``keys`` it has, in
    that order; every table-shaped entry but the configurations and claims when it has none of them.
    ``methods_only`` leaves out the rows of the single models of its pool (its ``models``)."""
    chapter = _require(results, REAL_LLMS)
    pool = set(chapter.get("models") or []) if methods_only else set()
    chosen = [k for k in keys if _is_table(chapter.get(k))] or [
        k for k, v in chapter.items() if _is_table(v) and k != "claims" and not k.endswith("_config")]
    if not chosen:
        raise KeyError(f"results of {REAL_LLMS} have no table (keys: {sorted(chapter)})")
    tables = {k: _frame(_rows(chapter, k, REAL_LLMS)) for k in chosen}
    return {k: t.loc[[name for name in t.index if name not in pool]] for k, t in tables.items()}


def published_claims(paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The chapters' claims that LLM-Blender's own Table 2 can answer, checked there by BERTScore (how
    chapters 3 and 4 check them on our data) and by GPT-Rank (how the paper argues them)."""
    paper = published_table("llm_blender_table2") if paper is None else paper
    llms = paper[paper["category"] == "LLM"]
    best_single = str(llms["gpt_rank"].idxmin())
    pointwise = ["SimCLS", "SummaReranker"]

    def better(a: str, b: str) -> tuple[bool, bool]:
        return bool(paper.loc[a, "bertscore"] > paper.loc[b, "bertscore"]), bool(
            paper.loc[a, "gpt_rank"] < paper.loc[b, "gpt_rank"])

    best_pointwise = (str(paper.loc[pointwise, "bertscore"].idxmax()), str(paper.loc[pointwise, "gpt_rank"].idxmin()))
    rows = {
        "PairRanker beats random": better("PairRanker", "Random"),
        f"PairRanker beats the best single model ({best_single})": better("PairRanker", best_single),
        "PairRanker beats the best pointwise reranker": (better("PairRanker", best_pointwise[0])[0],
                                                         better("PairRanker", best_pointwise[1])[1]),
        "MLM-scoring is no better than random": tuple(not v for v in better("MLM-Scoring", "Random")),
        "LLM-Blender beats PairRanker top-1": better("PairRanker top-3 + GenFuser", "PairRanker"),
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["by BERTScore (paper)", "by GPT-Rank (paper)"]
                                  ).rename_axis("claim, in the paper's Table 2")


# -- cost against quality ---------------------------------------------------------------------------------------

GENERATIONS, SCORER, CALLS, TOKENS = ("LLM generations / query", "scorer passes / query", "model calls / query",
                                      "generated tokens / query")


SHORT_LABELS: dict[str, str] = {  # selector id (or its family) -> the figure's short label
    "best_single": "best single", "random": "random", "router": "ZOOTER router", "rmr": "RMR",
    "pairranker:max_logits": "PairRanker full", "pairranker:bubble": "PairRanker bubble",
    "llm_blender": "LLM-Blender", "oracle": "oracle",
}


def _same_test_set(results: Results, stems: Sequence[str]) -> int:
    """N, after checking that the chapters evaluated the same split, as many examples, with the same N
    candidates (where a chapter records them)."""
    seen = {stem: {"split": results[stem].get("eval_split"),
                   "examples": results[stem].get("examples", results[stem].get("queries")),
                   "N": candidates_ranked(results, stem) - (1 if stem == GENFUSER else 0)} for stem in stems}
    for key in ("split", "examples", "N"):
        if len({v[key] for v in seen.values() if v[key] is not None}) > 1:
            raise ValueError(f"the chapters evaluated different test sets ({key} differs): {seen}; "
                             "their costs and qualities cannot share one table")
    return int(seen[stems[0]]["N"])


def _fuser_tokens(chapter: Mapping[str, Any]) -> float:
    """The fuser's generated tokens per query: chapter 4's ablation row of its own K (``fuser_config.top_k``)."""
    k = (chapter.get("fuser_config") or {}).get("top_k")
    if not isinstance(k, int):
        raise KeyError(f"chapter 4's results record no fuser_config.top_k (keys: {sorted(chapter)})")
    row = row_of(_rows(chapter, "ablation", GENFUSER), f"genfuser:top{k}", where="04_genfuser ablation")
    if TOKENS not in row:
        raise KeyError(f"chapter 4's ablation records no {TOKENS!r} (columns: {sorted(row)})")
    return float(row[TOKENS])


def cost_quality_points(results: Results, *, quality: str = "bertscore") -> pd.DataFrame:
    """One row per method: its ``quality`` on the test set and its cost per query (see the module's
    docstring for the accounting). Needs chapters 3 and 5; LLM-Blender is added when chapter 4 is in
    ``results``. The three chapters must have evaluated the same split with the same N."""
    r3, r5 = _require(results, PAIRRANKER), _require(results, ZOOTER)
    stems = [s for s in (PAIRRANKER, GENFUSER, ZOOTER) if s in results]
    n = _same_test_set(results, stems)
    side = _rows(r5, "side_by_side", ZOOTER)
    table2 = _rows(r3, "table2", PAIRRANKER)
    all_tokens = float(row_of(side, "rmr", where="05_zooter side_by_side")[TOKENS])
    bubble_comparisons = float(r3.get("bubble_comparisons_per_example", n - 1))

    def point(stem: str, rows: Mapping[str, Any], selector_id: str, kind: str, generations: float, scorer: float,
              tokens: float) -> dict[str, Any]:
        row = row_of(rows, selector_id, where=stem)
        if quality not in row:
            raise KeyError(f"{stem} row {selector_id!r} has no {quality!r} (columns: {sorted(row)})")
        short = SHORT_LABELS.get(selector_id) or SHORT_LABELS[selector_family(selector_id)]
        return {"method": label_of(rows, selector_id), "label": short, "chapter": stem, "kind": kind,
                quality: float(row[quality]), GENERATIONS: generations, SCORER: scorer, CALLS: generations + scorer,
                TOKENS: tokens}

    def from_zooter(selector_id: str, kind: str, scorer: float) -> dict[str, Any]:
        row = row_of(side, selector_id, where="05_zooter side_by_side")
        return point(ZOOTER, side, selector_id, kind, float(row["LLM calls / query"]), scorer, float(row[TOKENS]))

    def from_pairranker(selector_id: str, scorer: float) -> dict[str, Any]:
        return point(PAIRRANKER, table2, selector_id, "rank all N", float(n), scorer, all_tokens)

    points = [
        from_zooter("best_single", "one model", 0.0),
        from_zooter("random", "one model", 0.0),
        from_zooter("router", "one model", 1.0),
        from_zooter("rmr", "rank all N", float(n)),
        from_pairranker("pairranker:max_logits", float(n * (n - 1))),
        from_pairranker("pairranker:bubble", 2 * bubble_comparisons),
    ]
    if GENFUSER in results:
        r4 = results[GENFUSER]
        points.append(point(GENFUSER, _rows(r4, "table", GENFUSER), "llm_blender", "rank all N + fuse", float(n + 1),
                            float(n * (n - 1)), all_tokens + _fuser_tokens(r4)))
    oracle = next(i for i in side if selector_family(i) == "oracle")  # chapter 5's oracle, by its quality metric
    points.append(from_zooter(oracle, "oracle (reads the reference)", 0.0))
    return pd.DataFrame(points).set_index("method")


# -- one ledger for every chapter ---------------------------------------------------------------------------------

DOLLARS = "$ / 1k queries"
LEDGER_COLUMNS = (GENERATIONS, SCORER, TOKENS, DOLLARS, "priced by", "quality", "quality unit")
ERA_POOL = "MixInstruct-era pool"  # chapter 6's pool whose costs it records


def cost_ledger(results: Results, *, flat_price_per_million_tokens: float, quality: str = "bertscore") -> pd.DataFrame:
    """Every chapter's methods in the units a user pays, one row each (by setting and method): LLM generations, scorer passes
    (models that only read: rankers, reward models, routers) and generated tokens per query, dollars per
    1,000 queries, and the quality each reached in its own setting and unit (settings differ: compare
    rows within a setting, costs across them).

    Chapters 3-6 record tokens summed over their pools' models, so they are priced at one flat
    ``flat_price_per_million_tokens``; chapter 8 prices each model's tokens by its own table. Chapters 6
    and 8 are added when they are in ``results``."""
    flat = f"flat ${flat_price_per_million_tokens:g} / 1M tokens"
    rows = []

    def add(setting: str, method: str, generations: float, scorer: float, tokens: float, dollars: float, priced_by: str,
            value: float, unit: str) -> None:
        rows.append({"setting": setting, "method": method, GENERATIONS: generations, SCORER: scorer, TOKENS: tokens,
                     DOLLARS: dollars, "priced by": priced_by, "quality": value, "quality unit": unit})

    for name, row in cost_quality_points(results, quality=quality).iterrows():
        add("ch. 3-5: tiny local models, the default profile's test split", name, row[GENERATIONS], row[SCORER], row[TOKENS],
            row[TOKENS] * flat_price_per_million_tokens / 1e3, flat, row[quality], quality)
    if REAL_LLMS in results:
        held = _rows(results[REAL_LLMS], "held_out_comparison", REAL_LLMS)
        for name, row in _rows(results[REAL_LLMS], "cost_held_out", REAL_LLMS).items():
            tokens = float(row[TOKENS])
            add(f"ch. 6: AlpacaEval, {ERA_POOL}, held-out prompts", name, float(row["LLM calls / query"]),
                float(row.get(SCORER, float("nan"))), tokens, tokens * flat_price_per_million_tokens / 1e3, flat,
                float(held[f"{ERA_POOL} | {name}"]["win rate %"]), "win rate % against text-davinci-003 (GPT-4)")
    if ROUTING in results:
        datasets = results[ROUTING].get("datasets") or {}
        for key, row in _rows(results[ROUTING], "ledger", ROUTING).items():
            dataset, method = key.split(" | ", 1)
            add(f"ch. 8: strong/weak routing, {dataset}", method, float(row["LLM calls / query"]),
                float(row["scorer passes / query"]), float(row["generated tokens / query"]), float(row["$ / 1k queries"]),
                "per model (chapter 8's price table)", float(row["quality"]), str((datasets.get(dataset) or {}).get("unit", "")))
    return pd.DataFrame(rows).set_index(["setting", "method"])[list(LEDGER_COLUMNS)]


# -- claims ---------------------------------------------------------------------------------------------------------

HOLDS, FAILS = "holds", "fails"


def claims_table(results: Results) -> pd.DataFrame:
    """Every chapter's ``claims`` (claim of the paper -> holds here), with the chapter it comes from.

    A claim's value is a bool, or a mapping with ``holds`` (or ``holds (estimate)``) and optionally
    ``verdict`` (e.g. "within noise", for a claim the data can neither show nor refute) and ``why``.
    ``verdict`` is "holds" / "fails" where the chapter gives none."""
    rows = []
    for stem, chapter in results.items():
        claims = chapter.get("claims")
        if claims is None:
            continue
        if not isinstance(claims, Mapping):
            raise ValueError(f"claims of {stem} must map claim -> verdict, got {type(claims).__name__}")
        for claim, value in claims.items():
            why, verdict = "", None
            if isinstance(value, Mapping):
                why, verdict = str(value.get("why") or ""), value.get("verdict")
                value = value.get("holds", value.get("holds (estimate)"))
            if not isinstance(value, bool):
                raise ValueError(f"claim {claim!r} of {stem} must be true or false, got {value!r}")
            rows.append({"chapter": stem, "claim (paper)": str(claim), "holds here": value,
                         "verdict": str(verdict) if verdict else (HOLDS if value else FAILS), "why": why})
    table = pd.DataFrame(rows, columns=["chapter", "claim (paper)", "holds here", "verdict", "why"])
    if not table["why"].astype(bool).any():
        table = table.drop(columns="why")
    return table


def claims_markdown(claims: pd.DataFrame) -> str:
    """The claims as a plain Markdown list, each with its chapter: reproduced, not reproduced, then
    any other verdict (e.g. within noise)."""
    titles = {HOLDS: "Reproduced", FAILS: "Did not reproduce"}
    verdicts = [HOLDS, FAILS] + [v for v in dict.fromkeys(claims["verdict"]) if v not in titles]
    lines = []
    for verdict in verdicts:
        part = claims[claims["verdict"] == verdict]
        if part.empty and verdict not in titles:
            continue
        lines += [f"**{titles.get(verdict, verdict.capitalize())}** ({len(part)} of {len(claims)})", ""]
        for _, row in part.iterrows():
            why = f": {row['why']}" if "why" in row and row["why"] else ""
            lines.append(f"- {row['claim (paper)']} (chapter {row['chapter']}){why}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def paired_columns(table: pd.DataFrame) -> pd.DataFrame:
    """For display: columns ``"X (ours)"`` / ``"X (paper)"`` become a two-level header (X; ours, paper),
    the others keep their name on the first level."""
    pairs = []
    for column in table.columns:
        match = re.fullmatch(r"(.*) \((ours|paper)\)", str(column))
        pairs.append((match.group(1), match.group(2)) if match else (str(column), ""))
    out = table.copy()
    out.columns = pd.MultiIndex.from_tuples(pairs)
    return out


def for_json(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """A table as ``{row: {column: value}}`` with NaN dropped (results files refuse non-finite numbers); a
    multi-level row label is joined with " | "."""
    return {" | ".join(map(str, name)) if isinstance(name, tuple) else str(name):
            {str(k): v for k, v in row.items() if not (isinstance(v, float) and v != v)}
            for name, row in table.to_dict(orient="index").items()}
