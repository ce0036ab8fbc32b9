"""Reference-based scores of candidates, through the well-kept libraries, and their disk cache.

Score keys and ranges:

- ``bleu``: sentence BLEU, ``sacrebleu.sentence_bleu`` (what LLM-Blender used), 0-100.
- ``rouge1``, ``rouge2``, ``rougeL``: ROUGE F-measure, ``rouge_score`` with the Porter stemmer, 0-1.
- ``bertscore``: BERTScore F1, ``bert_score.BERTScorer`` without baseline rescaling, about 0-1.
- ``bartscore``: mean token log-likelihood of one text given the other (BARTScore-style), <= 0.
- ``bleurt``: BLEURT through ``evaluate.load("bleurt")``, only where its dependencies are installed
  (see :class:`Bleurt`; not on this project's offline machines).

The offline defaults differ from the paper's models, and each scorer has a ``paper()`` constructor
with the paper's choice: BERTScore on the packaged MiniLM encoder (paper: bert-base-multilingual-cased,
LLM-Blender's default), the log-likelihood score with SmolLM2-135M-Instruct (paper: BART-large-CNN).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .models import LoadedModel, accepts_logits_to_keep, load_model, model_config, resolve_device, resolve_model_path

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
DEFAULT_METRICS: tuple[str, ...] = ("bleu", "rouge1", "rouge2", "rougeL", "bertscore", "bartscore")
KNOWN_METRICS: tuple[str, ...] = (*DEFAULT_METRICS, "bleurt")

Direction = Literal["ref->hyp", "hyp->ref"]


class MetricError(ValueError):
    """Bad input to a metric: the message names the pair (or the example and model)."""


class MetricUnavailableError(RuntimeError):
    """A metric whose implementation cannot run in this environment; the message says how to enable it."""


def _check_pairs(hyps: Sequence[str], refs: Sequence[str], metric: str) -> None:
    """Same lengths, strings, nothing empty: an empty text would score silently as 0 or NaN."""
    if len(hyps) != len(refs):
        raise MetricError(f"{metric}: {len(hyps)} hypotheses but {len(refs)} references; they must pair up")
    for i, (hyp, ref) in enumerate(zip(hyps, refs, strict=True)):
        for role, text in (("hypothesis", hyp), ("reference", ref)):
            if not isinstance(text, str):
                raise MetricError(f"{metric}: {role} {i} must be a string, got {type(text).__name__}")
            if not text.strip():
                raise MetricError(f"{metric}: {role} {i} is empty")


# --------------------------------------------------------------------------------------------
# n-gram metrics

# rouge_score stems every token with a pure-Python Porter stemmer (about 8 s per 100k tokens here) and
# fills ROUGE-L's |hypothesis| x |reference| table in pure Python (about 1 s per million cells): a pair
# beyond these budgets is refused with its sizes, never left to run for minutes.
ROUGE_MAX_TOKENS = 20_000
ROUGE_L_MAX_CELLS = 4_000_000


def _rouge_tokens(text: str) -> int:
    """How many tokens rouge_score's tokenizer makes of a text (lower-cased runs of letters and digits)."""
    return len(re.findall(r"[a-z0-9]+", text.lower()))


def _rouge_problem(hyp: str, ref: str, rouge_types: Sequence[str]) -> str | None:
    n_hyp, n_ref = _rouge_tokens(hyp), _rouge_tokens(ref)
    if max(n_hyp, n_ref) > ROUGE_MAX_TOKENS:
        return (f"a hypothesis of {n_hyp} tokens against a reference of {n_ref} tokens is too long for ROUGE: over "
                f"the budget of {ROUGE_MAX_TOKENS:,} tokens per text (metrics.ROUGE_MAX_TOKENS); truncate or drop "
                f"such texts before scoring")
    if "rougeL" in rouge_types and n_hyp * n_ref > ROUGE_L_MAX_CELLS:
        return (f"a hypothesis of {n_hyp} tokens against a reference of {n_ref} tokens is too long for rougeL: its "
                f"longest-common-subsequence table would have {n_hyp * n_ref:,} cells, over the budget of "
                f"{ROUGE_L_MAX_CELLS:,} (metrics.ROUGE_L_MAX_CELLS); truncate or drop such texts before scoring")
    return None


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Sentence BLEU (sacrebleu defaults: 13a tokenisation, exp smoothing), 0-100, one per pair."""
    from sacrebleu import sentence_bleu

    _check_pairs(hyps, refs, "bleu")
    return [float(sentence_bleu(hyp, [ref]).score) for hyp, ref in zip(hyps, refs, strict=True)]


def rouge(hyps: Sequence[str], refs: Sequence[str], rouge_types: Sequence[str] = ROUGE_TYPES) -> list[dict[str, float]]:
    """ROUGE F-measures per pair, ``{"rouge1": ..., "rouge2": ..., "rougeL": ...}`` (Porter stemmer on)."""
    from rouge_score import rouge_scorer

    _check_pairs(hyps, refs, "rouge")
    unknown = set(rouge_types) - set(ROUGE_TYPES)
    if unknown:
        raise MetricError(f"rouge: unsupported type(s) {sorted(unknown)}; supported: {list(ROUGE_TYPES)}")
    for i, (hyp, ref) in enumerate(zip(hyps, refs, strict=True)):
        problem = _rouge_problem(hyp, ref, rouge_types)
        if problem:
            raise MetricError(f"rouge: pair {i}: {problem}")
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=True)
    return [
        {name: float(score.fmeasure) for name, score in scorer.score(ref, hyp).items()}
        for hyp, ref in zip(hyps, refs, strict=True)
    ]


# --------------------------------------------------------------------------------------------
# BERTScore


class BertScore:
    """BERTScore F1 through ``bert_score.BERTScorer``, without baseline rescaling or idf.

    The default encoder is the packaged all-MiniLM-L6-v2 (offline). ``num_layers`` must be given for
    encoders that ``bert_score`` has no table entry for; for MiniLM it is 6, the last layer, the one
    its sentence-similarity training tuned. A hub id that ``bert_score`` knows takes its table's layer.
    Texts longer than the encoder's limit (512 tokens for both) are truncated by ``bert_score``.
    """

    OFFLINE_MODEL = "minilm-l6"
    OFFLINE_NUM_LAYERS = 6
    PAPER_MODEL = "bert-base-multilingual-cased"  # LLM-Blender's eval_bertscore default

    def __init__(
        self,
        model: str = OFFLINE_MODEL,
        *,
        num_layers: int | None = None,
        batch_size: int = 32,
        device: str | torch.device = "auto",
    ) -> None:
        import bert_score

        path, _ = resolve_model_path(model)
        if not Path(path).exists():
            model_config(model)  # a hub id that cannot be had: ModelNotFoundError, not "pass num_layers"
        if num_layers is None and model == self.OFFLINE_MODEL:
            num_layers = self.OFFLINE_NUM_LAYERS
        if num_layers is None and path not in bert_score.utils.model2layers:
            raise MetricError(f"bertscore: pass num_layers for {model!r}; bert_score has no default layer for it")
        self.model = model
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self._scorer = bert_score.BERTScorer(
            model_type=path,
            num_layers=num_layers,
            batch_size=batch_size,
            device=str(self.device),
            rescale_with_baseline=False,
            idf=False,
        )
        self.num_layers = self._scorer.num_layers

    @classmethod
    def paper(cls, **kwargs: Any) -> BertScore:
        """The paper profile's encoder (needs the hub or its cache)."""
        return cls(cls.PAPER_MODEL, **kwargs)

    def __call__(self, hyps: Sequence[str], refs: Sequence[str]) -> list[float]:
        """F1 per (hypothesis, reference) pair."""
        _check_pairs(hyps, refs, "bertscore")
        if not hyps:
            return []
        _, _, f1 = self._scorer.score(list(hyps), list(refs), batch_size=self.batch_size)
        return [float(x) for x in f1]


# --------------------------------------------------------------------------------------------
# BARTScore-style log-likelihood


class LogLikelihoodScorer:
    """Mean token log-likelihood of a target text given a source text (BARTScore-style; <= 0, higher is better).

    ``direction="ref->hyp"`` (default) scores the hypothesis conditioned on the reference, BARTScore's
    precision direction. ``"hyp->ref"`` scores the reference given the hypothesis, which is what
    LLM-Blender's evaluation code computes (``BARTScorer.score(hypotheses, references)``);
    :meth:`paper` uses it.

    A seq2seq model (``facebook/bart-large-cnn``, the original BARTScore) encodes the source and scores
    the target as the decoder's labels. A causal model reads the prompt ``prompt_template`` (default
    ``"Text: {source}\\nParaphrase:"``) and scores the target tokens that follow it; the prompt turns
    "continue this text" into "say this again", so likelihood tracks agreement in meaning.
    Sources and targets are each truncated to ``max_length`` tokens.
    """

    OFFLINE_MODEL = "smollm2-135m-instruct"
    PAPER_MODEL = "facebook/bart-large-cnn"
    DEFAULT_PROMPT = "Text: {source}\nParaphrase:"

    def __init__(
        self,
        model: str | LoadedModel = OFFLINE_MODEL,
        *,
        direction: Direction = "ref->hyp",
        prompt_template: str = DEFAULT_PROMPT,
        max_length: int = 256,
        batch_size: int = 4,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = "auto",
    ) -> None:
        if direction not in ("ref->hyp", "hyp->ref"):
            raise MetricError(f"direction must be 'ref->hyp' or 'hyp->ref', got {direction!r}")
        if prompt_template.count("{source}") != 1:
            raise MetricError(f"prompt_template must contain '{{source}}' exactly once, got {prompt_template!r}")
        for name, value in (("max_length", max_length), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise MetricError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if max_length < 1 or batch_size < 1:
            raise MetricError(f"max_length and batch_size must be positive, got {max_length}, {batch_size}")
        self.loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
        if self.loaded.kind not in ("causal", "seq2seq"):
            raise MetricError(
                f"bartscore needs a causal or seq2seq LM, got {self.loaded.name!r} of kind {self.loaded.kind!r}"
            )
        self.direction = direction
        self.prompt_template = prompt_template
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def paper(cls, **kwargs: Any) -> LogLikelihoodScorer:
        """BART-large-CNN, hypothesis -> reference, 1024 tokens: LLM-Blender's BARTScore (needs the hub)."""
        return cls(cls.PAPER_MODEL, **{"direction": "hyp->ref", "max_length": 1024, **kwargs})

    def __call__(self, hyps: Sequence[str], refs: Sequence[str]) -> list[float]:
        """One score per pair, in input order."""
        _check_pairs(hyps, refs, "bartscore")
        sources, targets = (refs, hyps) if self.direction == "ref->hyp" else (hyps, refs)
        score_batch = self._score_causal if self.loaded.kind == "causal" else self._score_seq2seq
        # Length-sorted batches waste less padding; scores are put back in input order.
        order = sorted(range(len(hyps)), key=lambda i: len(sources[i]) + len(targets[i]))
        scores = [0.0] * len(hyps)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            values = score_batch([sources[i] for i in batch], [targets[i] for i in batch])
            for index, value in zip(batch, values, strict=True):
                scores[index] = value
        return scores

    def _encode(self, text: str, *, special: bool = False) -> list[int]:
        return self.loaded.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _causal_ids(self, source: str, target: str) -> tuple[list[int], list[int]]:
        """Context ids (prompt with the truncated source) and target ids, tokenised apart so the boundary is exact."""
        prefix, suffix = self.prompt_template.split("{source}")
        context = self._leading_special_ids(prefix) + self._encode(prefix)
        context += self._encode(source)[: self.max_length] + self._encode(suffix)
        return context, self._encode(" " + target)[: self.max_length]

    def _leading_special_ids(self, text: str) -> list[int]:
        """The special tokens a tokenizer puts first (a BOS for Gemma or Llama; none for SmolLM2)."""
        special = set(self.loaded.tokenizer.all_special_ids)
        return list(itertools.takewhile(lambda i: i in special, self._encode(text or " ", special=True)))

    @torch.inference_mode()
    def _score_causal(self, sources: list[str], targets: list[str]) -> list[float]:
        pairs = [self._causal_ids(s, t) for s, t in zip(sources, targets, strict=True)]
        lengths = [len(c) + len(t) for c, t in pairs]
        width = max(lengths)
        pad_id = self.loaded.tokenizer.pad_token_id
        pad_id = pad_id if pad_id is not None else 0
        # Left padding puts every target at the end, so only the last positions' logits are needed.
        input_ids = torch.tensor([[pad_id] * (width - n) + c + t for (c, t), n in zip(pairs, lengths, strict=True)])
        attention = torch.tensor([[0] * (width - n) + [1] * n for n in lengths])
        keep = max(len(t) for _, t in pairs) + 1
        log_probs = torch.log_softmax(self._last_logits(input_ids, attention, keep)[:, :-1].float(), dim=-1)
        target_ids = input_ids[:, -(keep - 1) :].to(log_probs.device)
        token_lp = log_probs.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
        return [float(token_lp[row, -len(target) :].mean()) for row, (_, target) in enumerate(pairs)]

    def _last_logits(self, input_ids: torch.Tensor, attention: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits of the last ``keep`` positions; position ids count real tokens only (left padding)."""
        device = self.loaded.device
        kwargs: dict[str, Any] = {"logits_to_keep": keep} if accepts_logits_to_keep(self.loaded.model) else {}
        output = self.loaded.model(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            position_ids=(attention.cumsum(-1) - 1).clamp(min=0).to(device),
            **kwargs,
        )
        return output.logits[:, -keep:]

    @torch.inference_mode()
    def _score_seq2seq(self, sources: list[str], targets: list[str]) -> list[float]:
        """As BARTScore: the target's token ids are the decoder labels; mean log-prob over them."""
        enc, tgt = self._tokenize(sources), self._tokenize(targets)
        labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
        output = self.loaded.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels)
        log_probs = torch.log_softmax(output.logits.float(), dim=-1)
        token_lp = log_probs.gather(-1, tgt["input_ids"].unsqueeze(-1)).squeeze(-1) * tgt["attention_mask"]
        return (token_lp.sum(-1) / tgt["attention_mask"].sum(-1)).tolist()

    def _tokenize(self, texts: list[str]) -> Any:
        encoded = self.loaded.tokenizer(
            texts, max_length=self.max_length, truncation=True, padding=True, return_tensors="pt"
        )
        return encoded.to(self.loaded.device)


# --------------------------------------------------------------------------------------------
# BLEURT


BLEURT_UNAVAILABLE = (
    "BLEURT is not available here. No PyPI package provides a BLEURT that runs with this project's "
    "transformers>=5: the official implementation (google-research/bleurt) is TensorFlow code installed "
    "from GitHub, not PyPI, and the PyTorch port `bleurt-pytorch` 0.0.1 fails to import with "
    "transformers 5 (it imports the removed `find_pruneable_heads_and_indices`); both fetch checkpoints "
    "from the internet. To enable it in the paper profile: `pip install tensorflow "
    "git+https://github.com/google-research/bleurt.git`, then `evaluate.load('bleurt')` works (online) "
    "and metrics.Bleurt() uses it."
)


class Bleurt:
    """BLEURT through ``evaluate.load("bleurt", checkpoint)``; refuses clearly when ``bleurt`` is not installed.

    ``checkpoint=None`` is evaluate's default (``bleurt-base-128``), which LLM-Blender's
    ``load('bleurt')`` used.
    """

    def __init__(self, checkpoint: str | None = None) -> None:
        if importlib.util.find_spec("bleurt") is None:
            raise MetricUnavailableError(BLEURT_UNAVAILABLE)
        import evaluate

        self._metric = evaluate.load("bleurt", checkpoint) if checkpoint else evaluate.load("bleurt")

    def __call__(self, hyps: Sequence[str], refs: Sequence[str]) -> list[float]:
        _check_pairs(hyps, refs, "bleurt")
        return [float(x) for x in self._metric.compute(predictions=list(hyps), references=list(refs))["scores"]]


# --------------------------------------------------------------------------------------------
# scoring a data set


Scorer = Callable[[Sequence[str], Sequence[str]], list[float]]


def _reference_of(ex: dict) -> str:
    reference = ex.get("output")
    if not ex.get("has_reference", True) or not isinstance(reference, str) or not reference.strip():
        raise MetricError(f"example {ex.get('id')!r} has no reference (output), so reference metrics cannot score it")
    return reference


def _collect_pairs(examples: Sequence[dict], metrics: Sequence[str] = ()) -> list[tuple[dict, str]]:
    """(candidate, reference) for every candidate; empty texts and missing references are errors, and
    an example without candidates is left unscored with a warning that counts and names them."""
    pairs = []
    unscored = []
    rouge_types = [m for m in metrics if m in ROUGE_TYPES]
    for n, ex in enumerate(examples):
        if not isinstance(ex, dict) or not isinstance(ex.get("candidates"), list):
            got = "no 'candidates' field" if isinstance(ex, dict) and "candidates" not in ex else (
                f"candidates of type {type(ex.get('candidates')).__name__}" if isinstance(ex, dict)
                else f"a {type(ex).__name__}, not a dict")
            where = ex.get("id", n) if isinstance(ex, dict) else n
            raise MetricError(f"example {where!r} has {got}; score_candidates needs a list of candidates")
        if not ex["candidates"]:
            unscored.append(ex.get("id", n))
            continue
        reference = _reference_of(ex)
        for cand in ex["candidates"]:
            if not isinstance(cand, dict) or "text" not in cand:
                fields = sorted(cand) if isinstance(cand, dict) else type(cand).__name__
                raise MetricError(f"example {ex.get('id')!r}: a candidate has no 'text' field (it has {fields})")
            text = cand.get("text")
            if rouge_types and isinstance(text, str) and text.strip():
                problem = _rouge_problem(text, reference, rouge_types)
                if problem:
                    raise MetricError(f"example {ex.get('id')!r}, model {cand.get('model')!r}: {problem}")
            if not isinstance(text, str) or not text.strip():
                raise MetricError(
                    f"example {ex.get('id')!r}: the candidate of model {cand.get('model')!r} has an empty text"
                )
            pairs.append((cand, reference))
    if unscored:
        shown = ", ".join(repr(i) for i in unscored[:10]) + (" ..." if len(unscored) > 10 else "")
        warnings.warn(f"score_candidates: skipped {len(unscored)} example(s) without candidates (nothing to "
                      f"score): {shown}", stacklevel=3)
    return pairs


def _chunked(
    fn: Callable[[list[str], list[str]], list[Any]],
    hyps: list[str],
    refs: list[str],
    desc: str,
    progress: bool,
    chunk: int,
) -> list[Any]:
    from tqdm.auto import tqdm

    out: list[Any] = []
    with tqdm(total=len(hyps), desc=desc, disable=not progress, leave=False) as bar:
        for start in range(0, len(hyps), chunk):
            out.extend(fn(hyps[start : start + chunk], refs[start : start + chunk]))
            bar.update(min(chunk, len(hyps) - start))
    return out


def _check_metric_names(metrics: Sequence[str]) -> None:
    if isinstance(metrics, str):
        raise MetricError(f"metrics must be a sequence of names, got the string {metrics!r}")
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise MetricError(f"unknown metric(s) {unknown}; known: {list(KNOWN_METRICS)}")


def _model_scorers(
    metrics: Sequence[str], bertscore: Scorer | None, loglik: Scorer | None, bleurt: Scorer | None
) -> dict[str, Scorer]:
    """The model-based scorers the metrics need, built before any work so a missing one fails fast."""
    scorers: dict[str, Scorer] = {}
    if "bertscore" in metrics:
        scorers["bertscore"] = bertscore or BertScore()
    if "bartscore" in metrics:
        scorers["bartscore"] = loglik or LogLikelihoodScorer()
    if "bleurt" in metrics:
        scorers["bleurt"] = bleurt or Bleurt()
    return scorers


def _metric_values(metric: str, hyps: list[str], refs: list[str], scorers: Mapping[str, Scorer],
                   progress: bool) -> list[float]:
    """One metric's scores for (hypothesis, reference) pairs: the one dispatch both scoring paths use."""
    if metric == "bleu":
        return _chunked(bleu, hyps, refs, "bleu", progress, 256)
    if metric in ROUGE_TYPES:
        rows = _chunked(lambda h, r: rouge(h, r, (metric,)), hyps, refs, metric, progress, 256)
        return [row[metric] for row in rows]
    return _chunked(scorers[metric], hyps, refs, metric, progress, 64)


def score_candidates(
    examples: list[dict],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    bertscore: Scorer | None = None,
    loglik: Scorer | None = None,
    bleurt: Scorer | None = None,
    progress: bool = True,
) -> list[dict]:
    """Fill every candidate's ``scores`` with the requested metrics against its example's reference.

    Updates the examples in place and returns the same list. ``bertscore``/``loglik``/``bleurt`` are
    scorer objects to reuse (default: :class:`BertScore`, :class:`LogLikelihoodScorer`, :class:`Bleurt`
    built on demand). Scores are written only after every metric has been computed, so a failure leaves
    the examples untouched. An empty candidate or a missing reference raises :class:`MetricError`.
    :func:`score_with_cache` is the same scoring with a disk cache (what the book's builds use).
    """
    _check_metric_names(metrics)
    pairs = _collect_pairs(examples, metrics)
    scorers = _model_scorers(metrics, bertscore, loglik, bleurt)
    hyps = [cand["text"] for cand, _ in pairs]
    refs = [ref for _, ref in pairs]
    results = {m: _metric_values(m, hyps, refs, scorers, progress) for m in metrics}
    _write_scores(pairs, results)
    return examples


# --------------------------------------------------------------------------------------------
# scoring a build's candidates with a disk cache


@dataclass(frozen=True)
class MetricSettings:
    """Which reference metrics score candidates, and with which models: what a cached score is keyed by."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    encoder: str = "minilm-l6"  # BERTScore's encoder
    bartscore_model: str = "smollm2-135m-instruct"  # BARTScore-style log-likelihood (reference -> hypothesis)

    def metric_id(self, metric: str) -> str:
        """A metric's cache identity: its name, and the model that computes it where there is one."""
        if metric == "bertscore":
            return f"bertscore:{self.encoder}"
        if metric == "bartscore":
            return f"bartscore:{self.bartscore_model}:ref->hyp"
        return metric


def score_with_cache(examples: Sequence[dict], settings: MetricSettings, cache: Any) -> tuple[int, float]:
    """Fill every candidate's reference-metric scores, computing only the (metric, text, reference)
    triples missing from ``cache`` (a :class:`blender_lib.io.JsonlCache`).

    Returns (pairs computed, seconds). Scorers with a model load only when something is missing."""
    pairs = [(c, ex["output"]) for ex in examples for c in ex["candidates"]]
    computed, seconds = 0, 0.0
    for metric in settings.metrics:
        if metric not in KNOWN_METRICS or metric == "bleurt":
            raise MetricError(f"metric {metric!r} is not supported by the build; known: {KNOWN_METRICS}")
        metric_id = settings.metric_id(metric)
        keys = [hashlib.sha256(json.dumps([metric_id, c["text"], ref]).encode()).hexdigest() for c, ref in pairs]
        missing = [i for i, k in enumerate(keys) if cache.get(k) is None]
        if missing:
            start = time.perf_counter()
            hyps, refs = [pairs[i][0]["text"] for i in missing], [pairs[i][1] for i in missing]
            scorers = {"bertscore": lambda h, r: BertScore(settings.encoder)(h, r),
                       "bartscore": lambda h, r: LogLikelihoodScorer(settings.bartscore_model, dtype="bf16")(h, r)}
            values = _metric_values(metric, hyps, refs, scorers, False)
            cache.add_batch([{"key": keys[i], "metric": metric_id, "value": float(v)} for i, v in zip(missing, values)])
            seconds += time.perf_counter() - start
            computed += len(missing)
        for (candidate, _), key in zip(pairs, keys):
            candidate["scores"][metric] = cache.get(key)["value"]
    return computed, seconds


def _write_scores(pairs: list[tuple[dict, str]], results: Mapping[str, list[float]]) -> None:
    for name, values in results.items():
        if len(values) != len(pairs):
            raise MetricError(f"{name}: the scorer returned {len(values)} scores for {len(pairs)} candidates")
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            raise MetricError(f"{name}: non-finite score for candidate(s) {bad[:5]}")
    for i, (cand, _) in enumerate(pairs):
        cand.setdefault("scores", {}).update({name: float(values[i]) for name, values in results.items()})
