"""Build a MixInstruct: instructions -> N candidates -> reference metrics -> pairwise judgments.

Every heavy stage reads and appends an on-disk cache (``data/cache/*.jsonl``), and models are
loaded only when a stage has uncached work, so a rebuild with the caches present takes seconds
and an interrupted build resumes where it stopped. The finished dataset is saved in the
MixInstruct schema (JSONL per split + a Hugging Face copy) with a short dataset card.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import data as data_lib
from . import metrics as metrics_lib
from .generate import GenerationStats, generate_candidates, pool_configs
from .io import JsonlCache, atomic_write_json, atomic_write_text
from .judge import JudgeStats, judge_examples, known_answer_accuracy, make_judge
from .metrics import MetricSettings, score_with_cache
from .models import add_token_counts
from .paths import data_dir

RETRIEVAL_MODEL_NAME = "retrieval-minilm"


@dataclass(frozen=True)
class BuildParams:
    """Everything that decides the content of a built MixInstruct."""

    seed: int = 0
    split_sizes: dict[str, int] = field(default_factory=lambda: {"train": 300, "val": 30, "test": 70})
    pool: str | tuple = "default"
    max_new_tokens: int = 64
    generation_dtype: str = "bfloat16"
    generation_batch_size: int = 16
    retrieval_candidate: bool = True
    encoder: str = "minilm-l6"
    metrics: tuple[str, ...] = metrics_lib.DEFAULT_METRICS
    bartscore_model: str = "smollm2-135m-instruct"
    judge_backend: str = "logprob"  # "logprob" (in process) | "served" (local server) | "openai" (remote)
    judge_model: str = "smollm2-135m-instruct"
    judge_base_url: str | None = None
    judge_splits: tuple[str, ...] = ("val", "test")
    max_instruction_words: int | None = 400
    max_output_words: int | None = 300
    # The published MixInstruct instead of a build ("hub:llm-blender/mix-instruct" or a folder in its
    # layout): no generation and no judging; the candidates are re-scored with ``metrics`` so that new
    # answers (chapter 4's fused ones) are scored by the same code. The judge above still judges those.
    source: str | None = None

    def __post_init__(self) -> None:
        if self.source is not None and (not isinstance(self.source, str) or not self.source.strip()):
            raise ValueError(f"source must be None (build) or 'hub:<dataset id>' / a folder, got {self.source!r}")
        if self.judge_backend not in ("logprob", "served", "openai"):
            raise ValueError(f"judge_backend must be 'logprob', 'served' or 'openai', got {self.judge_backend!r}")
        unknown = [s for s in self.judge_splits if s not in self.split_sizes]
        if unknown:
            raise ValueError(f"judge_splits {unknown} are not splits of this build ({sorted(self.split_sizes)})")

    def metric_settings(self) -> MetricSettings:
        """The reference metrics the build scores candidates with (what their cached scores are keyed by)."""
        return MetricSettings(tuple(self.metrics), self.encoder, self.bartscore_model)

    def key(self) -> str:
        """A short hash of the parameters: the built dataset is reused only when it matches."""
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True, default=list).encode()).hexdigest()[:16]

    def record(self) -> dict[str, Any]:
        """The parameters as saved with a build; ``source`` only when set, so a build's key and record
        are those it had before published-data mode existed."""
        values = asdict(self)
        if values["source"] is None:
            values.pop("source")
        return values


@dataclass
class BuildReport:
    params: dict[str, Any]
    sizes: dict[str, int] = field(default_factory=dict)
    removed_duplicates: int = 0
    length_skips: list[tuple[str, str]] = field(default_factory=list)
    empty_candidate_skips: list[tuple[str, str]] = field(default_factory=list)
    generation: dict[str, dict[str, float]] = field(default_factory=dict)
    metric_seconds: float = 0.0
    metric_pairs_computed: int = 0
    judge: dict[str, Any] = field(default_factory=dict)
    # Requests that still failed after the clients' retries, per stage ("generation", "judge"); a
    # rerun retries exactly those (failed requests are never cached). Failed generation requests
    # stop the build (IncompleteGeneration), so a finished build counts 0 there; a failed judge
    # request leaves its pair without a verdict (reasons in judge["failures"], the first 20).
    failed_requests: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# stages


def prepare_instructions(params: BuildParams, seeds: list[dict] | None = None) -> tuple[dict[str, list[dict]], BuildReport]:
    """Seed instructions -> exact dedup -> length filters -> seeded stratified split."""
    report = BuildReport(params=params.record())
    examples = seeds if seeds is not None else data_lib.load_seed_instructions()
    examples, report.removed_duplicates = data_lib.deduplicate(examples)
    examples, report.length_skips = data_lib.filter_by_length(
        examples, max_instruction_words=params.max_instruction_words, max_output_words=params.max_output_words
    )
    splits = data_lib.split_examples(examples, sizes=dict(params.split_sizes), seed=params.seed)
    return splits, report


def add_retrieval_candidate(splits: dict[str, list[dict]], encoder: str = "minilm-l6") -> None:
    """A retrieval "LLM": answer with the reference of the most similar *training* instruction.

    Training examples never retrieve themselves. It is a strong baseline where tasks repeat and
    a useless one where they do not, which makes it an instructive pool member.
    """
    from .models import embed_texts, load_model

    train = splits["train"]
    if not train:
        raise ValueError("the retrieval candidate needs a non-empty train split")
    encoder_model = load_model(encoder, device="cpu")
    query_text = lambda ex: f"{ex['instruction']}\n{ex.get('input', '')}".strip()  # noqa: E731
    train_emb = embed_texts(encoder_model, [query_text(ex) for ex in train])
    for name, part in splits.items():
        if not part:
            continue
        sims = embed_texts(encoder_model, [query_text(ex) for ex in part]) @ train_emb.T
        if name == "train":
            sims.fill_diagonal_(-2.0)  # never retrieve yourself
        nearest = sims.argmax(dim=1).tolist()
        for ex, j in zip(part, nearest):
            ex["candidates"] = [c for c in ex["candidates"] if c["model"] != RETRIEVAL_MODEL_NAME] + [
                {
                    "model": RETRIEVAL_MODEL_NAME,
                    "decoding_method": "nearest-train-reference",
                    "text": train[j]["output"],
                    "n_tokens": 0,
                    "scores": {},
                }
            ]


def drop_examples_with_empty_candidates(splits: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """An empty generation cannot be scored or judged: drop its example, counted with a reason."""
    skipped = []
    for name, part in splits.items():
        kept = []
        for ex in part:
            empty = [c["model"] for c in ex["candidates"] if not c["text"].strip()]
            if empty:
                skipped.append((ex["id"], f"empty candidate text from {', '.join(empty)}"))
            else:
                kept.append(ex)
        splits[name] = kept
    return skipped


def known_answer_check(params: BuildParams, examples: list[dict], cache: JsonlCache, *, n: int, seed: int = 0) -> dict[str, float]:
    """Known-answer accuracy (see :func:`blender_lib.judge.known_answer_accuracy`) of the build's judge."""
    judge, close = make_judge(params.judge_backend, params.judge_model, params.judge_base_url)
    try:
        return known_answer_accuracy(examples, judge, cache, n=n, seed=seed)
    finally:
        close()


def served_judge_check(
    params: BuildParams, judged: list[dict], cache: JsonlCache, *, n_examples: int, n_known: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Re-judge the first ``n_examples`` judged examples through a real local OpenAI-compatible server
    (the code path OpenAI and vLLM use) and compare its combined verdicts with those stored."""
    judge, close = make_judge("served", params.judge_model)
    subset = copy.deepcopy(judged[:n_examples])
    try:
        stats = judge_examples(subset, judge, cache, progress=False)
        known = known_answer_accuracy(judged, judge, cache, n=n_known, seed=seed)
    finally:
        close()
    stored = judged[:n_examples]
    same = sum(s["cmp_results"].get(k) == v for s, ex in zip(subset, stored) for k, v in ex["cmp_results"].items())
    total = sum(len(ex["cmp_results"]) for ex in stored)
    return {
        "ordered pairs sent": stats.requests,
        "unparseable replies": stats.unparseable,
        "request failures": len(stats.failures),
        "combined verdict equal to the stored judge": f"{same}/{total}",
        **{f"known-answer: {k}": round(v, 3) for k, v in known.items()},
    }


# --------------------------------------------------------------------------------------------
# the whole build


def build_mixinstruct(
    params: BuildParams,
    *,
    cache_dir: Path | None = None,
    out_dir: Path | None = None,
    seeds: list[dict] | None = None,
    progress: bool = True,
) -> tuple[dict[str, list[dict]], BuildReport]:
    """Run every stage (each cached) and save the dataset; returns the splits and a build report.
    ``cache_dir`` / ``out_dir`` default to ``cache/`` and ``mixinstruct/`` under :func:`data_dir`.
    With ``params.source`` set, the published MixInstruct is imported instead (:func:`import_published`)."""
    cache_dir = cache_dir or data_dir() / "cache"
    out_dir = out_dir or data_dir() / "mixinstruct"
    if params.source is not None:
        return import_published(params, cache_dir=cache_dir, out_dir=out_dir)
    start = time.perf_counter()
    splits, report = prepare_instructions(params, seeds)
    all_examples = [ex for part in splits.values() for ex in part]

    pool = pool_configs(params.pool if isinstance(params.pool, str) else list(params.pool),
                        max_new_tokens=params.max_new_tokens, seed=params.seed)
    stats: dict[str, GenerationStats] = generate_candidates(
        all_examples, pool, JsonlCache.open(cache_dir / "generations.jsonl"),
        batch_size=params.generation_batch_size, dtype=params.generation_dtype, progress=progress,
    )
    report.generation = {
        name: {"generated": s.generated, "from_cache": s.from_cache, "tokens": s.tokens,
               "tokens_per_second": round(s.tokens_per_second, 1)}
        for name, s in stats.items()
    }
    if params.retrieval_candidate:
        add_retrieval_candidate(splits, params.encoder)
    report.empty_candidate_skips = drop_examples_with_empty_candidates(splits)
    all_examples = [ex for part in splits.values() for ex in part]

    report.metric_pairs_computed, report.metric_seconds = score_with_cache(
        all_examples, params.metric_settings(), JsonlCache.open(cache_dir / "scores.jsonl")
    )

    judge, close = make_judge(params.judge_backend, params.judge_model, params.judge_base_url)
    try:
        judged = [ex for name in params.judge_splits for ex in splits[name]]
        judge_stats: JudgeStats = judge_examples(
            judged, judge, JsonlCache.open(cache_dir / "judgments.jsonl"), both_orders=True, progress=progress
        )
    finally:
        close()
    report.judge = {
        "name": judge.name, "splits": list(params.judge_splits), "requests": judge_stats.requests,
        "from_cache": judge_stats.from_cache, "unparseable": judge_stats.unparseable,
        "pairs": judge_stats.pairs, "pairs_without_verdict": judge_stats.pairs_without_verdict,
        "position_consistency": judge_stats.consistency, "first_position_rate": judge_stats.first_position_rate,
        "seconds": round(judge_stats.seconds, 1), "failures": judge_stats.failures[:20],
    }
    report.failed_requests = {
        "generation": sum(s.failed for s in stats.values()), "judge": judge_stats.failed_requests,
    }
    report.sizes = {name: len(part) for name, part in splits.items()}
    report.seconds = time.perf_counter() - start
    save_build(splits, report, params, out_dir)
    if any(report.failed_requests.values()):
        warnings.warn(failed_requests_note(report), RuntimeWarning, stacklevel=2)
    return splits, report


def failed_requests_note(report: BuildReport) -> str | None:
    """One sentence on the requests that failed after retries (``None`` when none did)."""
    failed = {stage: n for stage, n in report.failed_requests.items() if n}
    if not failed:
        return None
    counts = ", ".join(f"{n} {stage}" for stage, n in failed.items())
    return (f"Failed requests after the clients' retries: {counts} "
            f"({report.judge.get('pairs_without_verdict', 0)} judged pair(s) without a verdict); "
            "they were not cached, so a rerun of the build retries exactly those.")


def save_build(splits: dict[str, list[dict]], report: BuildReport, params: BuildParams, out_dir: Path) -> None:
    """The dataset (JSONL + HF copy), the build report and a dataset card."""
    data_lib.save_splits(splits, out_dir)
    atomic_write_json(out_dir / "build.json", {"key": params.key(), "report": _jsonable(stable_record(report))})
    atomic_write_text(out_dir / "README.md", dataset_card(splits, report))


def stable_record(report: BuildReport) -> dict[str, Any]:
    """The report without what differs between a first build and a cached rebuild (timings, work
    done), so the saved dataset only changes when its content does. ``failed_requests`` appears
    only when some request failed (absent: none did)."""
    record = asdict(report)
    for volatile in ("seconds", "metric_seconds", "metric_pairs_computed", "generation"):
        record.pop(volatile)
    if not any(record["failed_requests"].values()):
        # kept only when some request failed, i.e. when the saved dataset lacks verdicts a rerun
        # would add: a complete build's record stays as it was before this field existed
        record.pop("failed_requests")
    record["judge"] = {k: v for k, v in record["judge"].items() if k not in ("seconds", "from_cache")}
    return record


def load_build(out_dir: Path | None = None) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Load a saved build (default: ``mixinstruct/`` under :func:`data_dir`): its splits and its build
    record (key + report)."""
    out_dir = out_dir or data_dir() / "mixinstruct"
    record_path = out_dir / "build.json"
    if not record_path.exists():
        raise FileNotFoundError(f"no built MixInstruct at {out_dir}: run notebooks/01_build_mixinstruct.ipynb first")
    return data_lib.load_splits(out_dir), json.loads(record_path.read_text(encoding="utf-8"))


def build_params(record: Mapping[str, Any]) -> BuildParams:
    """The parameters a saved build was made with (from :func:`load_build`'s record): later chapters
    score and judge new answers exactly as the build scored and judged its candidates."""
    values = dict(record["report"]["params"])
    return BuildParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def dataset_card(splits: dict[str, list[dict]], report: BuildReport) -> str:
    """A short Markdown card: sources, models, sizes, judge."""
    if report.params.get("source") is not None:
        return published_card(report)
    models = [c["model"] for c in next(ex for part in splits.values() for ex in part)["candidates"]]
    methods = {c["model"]: c["decoding_method"] for part in splits.values() for ex in part for c in ex["candidates"]}
    lines = [
        "# Mini MixInstruct (Blender Book, default profile)",
        "",
        "Built by `notebooks/01_build_mixinstruct.ipynb` from the project's own seed instructions",
        "(`data/seed_instructions.jsonl`, written for this project). Schema: the published",
        "`llm-blender/mix-instruct` JSONL, plus `cmp_results_raw` (the judge's verdict per ordered pair).",
        "",
        "| split | examples |",
        "|---|---|",
        *[f"| {name} | {size} |" for name, size in report.sizes.items()],
        "",
        "Candidates (model: decoding method):",
        "",
        *[f"- `{m}`: {methods[m]}" for m in models],
        "",
        f"Metrics: {', '.join(report.params['metrics'])}.",
        f"Judge: `{report.judge.get('name')}` on splits {report.judge.get('splits')}, both orders per pair;",
        f"{report.judge.get('unparseable')} unparseable verdicts of {report.judge.get('requests')};",
        f"position consistency {_fmt(report.judge.get('position_consistency'))}.",
        f"Dropped: {report.removed_duplicates} duplicates, {len(report.length_skips)} by length,",
        f"{len(report.empty_candidate_skips)} with an empty candidate.",
        "",
    ]
    note = failed_requests_note(report)
    if note:  # only then: a complete build's card is unchanged
        lines += [note, ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.3f}"


def candidate_backbones(record: Mapping[str, Any]) -> dict[str, str]:
    """The model behind each candidate name of a build (its pool's configs; the retrieval candidate
    runs the build's encoder; the published MixInstruct's hub ids), e.g. for counting the parameters
    a selector touches."""
    params = record["report"]["params"]
    if params.get("source") is not None:
        return {name: hub_id for name, (hub_id, _) in PUBLISHED_MODELS.items()}
    pool = params["pool"]
    backbones = {c.name: c.model for c in pool_configs(pool if isinstance(pool, str) else list(pool))}
    if params.get("retrieval_candidate"):
        backbones[RETRIEVAL_MODEL_NAME] = params["encoder"]
    return backbones


# -- the published MixInstruct (llm-blender/mix-instruct) ------------------------------------------------------

PUBLISHED_ID = "llm-blender/mix-instruct"
PUBLISHED_FILES = {"train": "train_data_prepared.jsonl", "val": "val_data_prepared.jsonl", "test": "test_data_prepared.jsonl"}
PUBLISHED_HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def load_published(source: str, split_sizes: Mapping[str, int | None] | None = None, *, seed: int = 0,
                   judged_test_only: bool = True) -> dict[str, list[dict]]:
    """The published MixInstruct (100k train, 5k val, 5k test; 11 LLMs' candidates with their metric
    scores; ChatGPT's pairwise ``cmp_results`` on 4,771 test examples) instead of a build: no generation,
    no judging. ``source``: ``"hub:llm-blender/mix-instruct"`` (the hub, through ``datasets``) or a local
    folder holding the hub's ``{train,val,test}_data_prepared.jsonl``. ``split_sizes`` takes a seeded
    subset of each split (None or a missing split: all of it); with ``judged_test_only`` the test split
    keeps the examples ChatGPT judged, as the paper's Table 2 does."""
    if source.startswith("hub:"):
        dataset_id = source.removeprefix("hub:")
        load = lambda split: data_lib.load_hf(dataset_id, split=PUBLISHED_HUB_SPLITS[split])  # noqa: E731
    else:
        folder = Path(source).expanduser()
        missing = [name for name in PUBLISHED_FILES.values() if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {missing}: the published MixInstruct's files "
                                    f"(hub {PUBLISHED_ID}); or pass source='hub:{PUBLISHED_ID}'")
        load = lambda split: data_lib.load_local(folder / PUBLISHED_FILES[split], shape="mixinstruct")  # noqa: E731
    splits = {}
    for split in PUBLISHED_FILES:
        examples = load(split)
        if split == "test" and judged_test_only:
            examples = [ex for ex in examples if ex["cmp_results"]]
        size = (split_sizes or {}).get(split)
        splits[split] = [examples[k] for k in data_lib.seeded_rows(len(examples), size, seed)]
    return splits


# The published candidates: hub id and nominal size (from the model's name or card). Counting a
# published 13B model's parameters from its config needs the hub; cost tables use the nominal size.
PUBLISHED_MODELS: dict[str, tuple[str, float]] = {
    "alpaca-native": ("chavinlo/alpaca-native", 7e9),
    "chatglm-6b": ("THUDM/chatglm-6b", 6e9),
    "dolly-v2-12b": ("databricks/dolly-v2-12b", 12e9),
    "flan-t5-xxl": ("google/flan-t5-xxl", 11e9),
    "koala-7B-HF": ("TheBloke/koala-7B-HF", 7e9),
    "llama-7b-hf-baize-lora-bf16": ("project-baize/baize-lora-7B", 7e9),
    "moss-moon-003-sft": ("fnlp/moss-moon-003-sft", 16e9),
    "mpt-7b": ("mosaicml/mpt-7b", 7e9),
    "mpt-7b-instruct": ("mosaicml/mpt-7b-instruct", 7e9),
    "oasst-sft-4-pythia-12b-epoch-3.5": ("OpenAssistant/oasst-sft-4-pythia-12b-epoch-3.5", 12e9),
    "stablelm-tuned-alpha-7b": ("stabilityai/stablelm-tuned-alpha-7b", 7e9),
    "vicuna-13b-1.1": ("eachadea/vicuna-13b-1.1", 13e9),
}
COUNTING_TOKENIZER = "smollm2-135m-instruct"  # the published candidates carry no token counts
PUBLISHED_JUDGE = "published:chatgpt (llm-blender/mix-instruct cmp_results)"


def candidate_parameter_counts(record: Mapping[str, Any]) -> dict[str, int]:
    """Parameters per candidate name: counted from each backbone's config for a build, nominal for the
    published candidates (whose configs live on the hub)."""
    if record["report"]["params"].get("source") is not None:
        return {name: int(size) for name, (_, size) in PUBLISHED_MODELS.items()}
    from .models import parameter_count

    return {name: parameter_count(model) for name, model in candidate_backbones(record).items()}


def import_published(params: BuildParams, *, cache_dir: Path, out_dir: Path) -> tuple[dict[str, list[dict]], BuildReport]:
    """Chapter 1 on the published MixInstruct: load ``params.source`` (seeded ``split_sizes``; the test
    split keeps the ChatGPT-judged examples), drop examples with an empty candidate as a build does,
    re-score every candidate with the build's metrics (cached; the paper's own value of each such metric
    is kept as ``paper_<metric>``) and save it like a build. Nothing is generated or judged: the judge
    record describes the published ``cmp_results``."""
    assert params.source is not None
    start = time.perf_counter()
    report = BuildReport(params=params.record())
    splits = load_published(params.source, params.split_sizes, seed=params.seed)
    unknown = [m for m in {c["model"] for part in splits.values() for ex in part for c in ex["candidates"]}
               if m not in PUBLISHED_MODELS]
    if unknown:
        raise data_lib.DataError(f"{params.source} has candidates {sorted(unknown)} that the published MixInstruct "
                                 f"does not (known: {sorted(PUBLISHED_MODELS)})")
    report.empty_candidate_skips = drop_examples_with_empty_candidates(splits)
    everything = [ex for part in splits.values() for ex in part]
    add_token_counts(everything, COUNTING_TOKENIZER)
    for candidate in (c for ex in everything for c in ex["candidates"]):
        for metric in params.metrics:
            if metric in candidate["scores"]:
                candidate["scores"][f"paper_{metric}"] = candidate["scores"].pop(metric)
    report.metric_pairs_computed, report.metric_seconds = score_with_cache(
        everything, params.metric_settings(), JsonlCache.open(cache_dir / "scores.jsonl"))
    report.judge = published_judge_record(splits, params.judge_splits)
    report.failed_requests = {"generation": 0, "judge": 0}
    report.sizes = {name: len(part) for name, part in splits.items()}
    report.seconds = time.perf_counter() - start
    save_build(splits, report, params, out_dir)
    return splits, report


def published_judge_record(splits: Mapping[str, list[dict]], judge_splits: Sequence[str]) -> dict[str, Any]:
    """The judge fields of a build report for the published verdicts. ChatGPT's two orders per pair
    were combined before publication, so position consistency cannot be measured (None)."""
    judged = [ex for name in judge_splits for ex in splits[name] if ex["cmp_results"]]
    pairs = sum(len(ex["candidates"]) * (len(ex["candidates"]) - 1) // 2 for ex in judged)
    verdicts = sum(len(ex["cmp_results"]) for ex in judged)
    return {"name": PUBLISHED_JUDGE, "splits": list(judge_splits), "requests": 0, "from_cache": 0, "unparseable": 0,
            "pairs": pairs, "pairs_without_verdict": pairs - verdicts, "position_consistency": None,
            "first_position_rate": None, "seconds": 0.0, "failures": []}


def published_card(report: BuildReport) -> str:
    """The dataset card of an imported published MixInstruct."""
    return "\n".join([
        "# MixInstruct (published, llm-blender/mix-instruct)",
        "",
        f"Imported by `notebooks/01_build_mixinstruct.ipynb` from `{report.params['source']}` "
        f"(seeded subsets, seed {report.params['seed']}); nothing was generated or judged.",
        "The test split keeps the examples ChatGPT judged (`cmp_results`, both orders combined).",
        "",
        "| split | examples |",
        "|---|---|",
        *[f"| {name} | {size} |" for name, size in report.sizes.items()],
        "",
        f"Metrics, recomputed by this book: {', '.join(report.params['metrics'])}; the paper's own values "
        "are kept as `paper_<metric>`.",
        f"Dropped: {len(report.empty_candidate_skips)} examples with an empty candidate. Token counts "
        f"(`n_tokens`, for cost tables) are lengths in {COUNTING_TOKENIZER}'s tokens: none were published.",
        "",
    ])


def judge_table(judge: Mapping[str, Any]) -> pd.DataFrame:
    """Chapter 1's judge summary of a build report (n/a where the published verdicts cannot tell)."""
    def rounded(value: Any) -> Any:
        return "n/a" if value is None else round(value, 3)

    return pd.Series({
        "judge": judge["name"],
        "requests (ordered pairs)": judge["requests"],
        "unparseable verdicts": judge["unparseable"],
        "pairs without any verdict": judge["pairs_without_verdict"],
        "position consistency": rounded(judge["position_consistency"]),
        "'A is better' among decisive raw verdicts": rounded(judge["first_position_rate"]),
    }, name="value").to_frame()


def pool_table(params: BuildParams) -> pd.DataFrame:
    """The candidate pool chapter 1 shows: each generation config, or the published candidates."""
    if params.source is not None:
        return pd.DataFrame([{"candidate": name, "model": hub_id, "nominal parameters": f"{size / 1e9:g}B"}
                             for name, (hub_id, size) in PUBLISHED_MODELS.items()]).set_index("candidate")
    configs = pool_configs(params.pool if isinstance(params.pool, str) else list(params.pool),
                           max_new_tokens=params.max_new_tokens, seed=params.seed)
    return pd.DataFrame(
        [{"candidate": c.name, "model": c.model, "prompt": c.prompt_style, "decoding": c.decoding_method,
          "system prompt": c.system_prompt or ""} for c in configs]
    ).set_index("candidate")


def write_published(splits: Mapping[str, Sequence[dict]], folder: str | Path) -> Path:
    """Write splits in the published MixInstruct's exact layout (``{train,val,test}_data_prepared.jsonl``;
    ``cmp_results`` a JSON string, null when unjudged): the inverse of :func:`load_published` for a
    folder, e.g. to hand a build to code written for the hub's files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in PUBLISHED_FILES.items():
        rows = [{"id": ex["id"], "instruction": ex["instruction"], "input": ex["input"], "output": ex["output"],
                 "candidates": [{"decoding_method": c["decoding_method"], "model": c["model"], "text": c["text"],
                                 "scores": c["scores"]} for c in ex["candidates"]],
                 "cmp_results": json.dumps(ex["cmp_results"]) if ex["cmp_results"] else None}
                for ex in splits.get(split, [])]
        atomic_write_text(folder / name, "".join(json.dumps(row) + "\n" for row in rows))
    return folder
