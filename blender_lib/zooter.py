"""ZOOTER (Lu et al., NAACL 2024, arXiv 2311.08692): rewards -> labels -> a router that picks ONE model.

The pipeline, one small function per box of the paper's Figure 2::

    rewards [n, N]  --reward_labels-->  labels (per-query softmax)  --enhance_labels(tags, beta)-->
    enhanced labels  --train_router (KL)-->  RouterModel  --route / routed_choices-->  one model per query

=========================  ================================================================
step                       functions
=========================  ================================================================
rewards for every          :func:`metric_rewards` (stored reference metrics; reads the reference),
(query, candidate)         :func:`pairranker_rewards` (our PairRanker against the reference),
                           :func:`scorer_rewards` (any :class:`~blender_lib.rerankers.TextScorer`:
                           a reward model in the paper profile, the SmolLM2 stand-in offline);
                           :func:`reward_source` picks one from a spec string;
                           :func:`cached_rewards` keeps them on disk
labels                     :func:`reward_labels`, :func:`reward_entropy`
tags                       :func:`data_tags` (the data's own tags), :func:`cluster_tags` (KMeans
                           on MiniLM embeddings, for untagged data); :func:`enhance_labels`
router                     :class:`RouterConfig`, :class:`RouterModel`, :class:`RoutingSet`, :func:`train_router`,
                           :func:`beta_sweep`; :func:`router_scores`, :func:`routed_choices`
baselines and cost         :func:`rmr_choices` (reward-model ranking: argmax of the rewards),
                           :func:`cost_table`, :func:`entropy_vs_quality`
=========================  ================================================================

Every reward array is ``[n_examples, N]`` in the examples' candidate order, and every example must
list its candidates' models in the same order (:func:`blender_lib.examples.example_models` says
which one does not).
Routing needs at least two models: a one-model "router" is refused (:class:`RouterConfig`), while
the label, entropy and cost helpers accept N = 1 (one label of 1.0, entropy 0).

The router is a fine-tuned encoder (:mod:`blender_lib.encoders`) with an N-way head, trained by
the same loop as PairRanker and the rerankers (:func:`blender_lib.training.train`) on its own data:
a :class:`RoutingSet` of queries and label rows. Checkpoints, resume, the best epoch on validation
and the cache folder (keyed by the config, the queries and the labels, hence by beta) come from there.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .encoders import EncoderConfig, EncoderModel
from .examples import (GPT_RANK, Scores, check_examples, data_key, example_models, metric_values,
                       source_text)
from .io import atomic_write_json
from .judge import ranks_from_scores
from .models import LoadedModel, embed_texts, load_model
from .paths import cache_dir
from .rankers import PairRankerModel, reference_rewards_many
from .rerankers import TextScorer, reward_scorer
from .training import Shuffled, TrainReport, improves, train

ALL = "all"  # in cost_table: the method runs every model (RMR, oracle)
NORMALIZATIONS = ("zscore", "none")


# --------------------------------------------------------------------------------------------
# rewards for every (query, candidate): [n_examples, N], one model order


def metric_rewards(examples: Sequence[Mapping[str, Any]], metric: str) -> np.ndarray:
    """A stored reference metric (``"bertscore"``, ``"bleu"``, ...; ``"gpt_rank"`` gives the
    negative GPT-Rank) as the reward. The offline default: free, but it reads the reference (or the
    judge), so it is fair as a training label and an oracle at test time."""
    example_models(examples)
    return np.array([metric_values(ex, metric) for ex in examples], dtype=float)


def pairranker_rewards(ranker: PairRankerModel, examples: Sequence[Mapping[str, Any]], *,
                       batch_size: int = 32) -> np.ndarray:
    """Our trained PairRanker's reward: each candidate's logit against the reference, both orders
    averaged (:func:`blender_lib.rankers.reference_rewards_many`). Reads the reference: a training
    label, not a test-time selector."""
    example_models(examples)
    references = []
    for n, ex in enumerate(examples):
        reference = ex.get("output")
        if not isinstance(reference, str) or not reference.strip():
            raise ValueError(f"example {ex.get('id', n)!r} has no reference (output): a PairRanker reward compares "
                             f"each candidate with it")
        references.append(reference)
    rewards = reference_rewards_many(ranker, [source_text(ex) for ex in examples],
                                     [[c["text"] for c in ex["candidates"]] for ex in examples], references,
                                     batch_size=batch_size)
    return np.array(rewards, dtype=float)


def scorer_rewards(scorer: TextScorer, examples: Sequence[Mapping[str, Any]], *,
                   progress: bool = False) -> np.ndarray:
    """Any :class:`~blender_lib.rerankers.TextScorer` as the reward: a reward model
    (:class:`~blender_lib.rerankers.RewardModelScorer`, the paper's setting), the offline LM stand-in
    (:class:`~blender_lib.rerankers.LMRewardScorer`), or a trained reranker. Reference-free ones are
    what RMR can use at test time."""
    example_models(examples)
    return np.array(scorer(examples, progress=progress), dtype=float)


@dataclass(frozen=True)
class RewardSource:
    """A named reward function of examples; ``reads_reference`` flags the ones that are oracles at
    test time (metrics, PairRanker-vs-reference)."""

    spec: str
    reads_reference: bool
    compute: Callable[[Sequence[Mapping[str, Any]]], np.ndarray]

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.compute(examples)

    @property
    def kind(self) -> str:
        """``"metric"``, ``"scorer"`` or ``"pairranker"``: the part of the spec before the colon."""
        return self.spec.partition(":")[0].strip()

    @property
    def model(self) -> str | None:
        """The model or folder the spec names (None for a metric, or a PairRanker passed as ``ranker=``)."""
        name = self.spec.partition(":")[2].strip()
        return name if self.kind != "metric" and name else None


def reward_source(spec: str, *, ranker: PairRankerModel | None = None, device: str | torch.device = "auto",
                  batch_size: int | None = None, **scorer_kwargs: Any) -> RewardSource:
    """A reward source from a spec string, so a notebook parameter can choose it:

    ``"metric:<name>"`` (stored metric, e.g. ``metric:bertscore``), ``"scorer:<model>"`` (a reward
    model or causal LM through :func:`~blender_lib.rerankers.reward_scorer`, e.g.
    ``scorer:OpenAssistant/reward-model-deberta-v3-large-v2`` or ``scorer:smollm2-135m-instruct``),
    ``"pairranker:<folder>"`` (a saved PairRanker) or ``"pairranker"`` with ``ranker=``. Models
    load now, once. ``scorer_kwargs`` (e.g. ``dtype``) configure a ``scorer:`` model; the other
    kinds have no such settings and ignore them, so one notebook parameter serves every spec."""
    kind, _, arg = str(spec).partition(":")
    kind, arg = kind.strip(), arg.strip()
    if kind == "metric" and arg:
        return RewardSource(spec, True, lambda examples: metric_rewards(examples, arg))
    if kind == "scorer" and arg:
        if batch_size is not None:
            scorer_kwargs["batch_size"] = batch_size
        scorer = reward_scorer(arg, device=device, **scorer_kwargs)
        return RewardSource(spec, False, lambda examples: scorer_rewards(scorer, examples))
    if kind == "pairranker" and (arg or ranker is not None):
        if arg and ranker is not None:
            raise ValueError(f"reward spec {spec!r} names a folder and ranker= was given too: pass one")
        loaded = ranker if ranker is not None else PairRankerModel.from_pretrained(arg, device=device)
        size = batch_size or 32
        return RewardSource(spec, True, lambda examples: pairranker_rewards(loaded, examples, batch_size=size))
    raise ValueError(f"unknown reward spec {spec!r}: use 'metric:<metric name>', 'scorer:<reward model or causal LM>', "
                     f"'pairranker:<saved PairRanker folder>', or 'pairranker' with ranker=")


def cached_rewards(name: str, examples: Sequence[Mapping[str, Any]],
                   compute: Callable[[Sequence[Mapping[str, Any]]], np.ndarray], *,
                   root: str | Path | None = None) -> np.ndarray:
    """``compute(examples)``, kept on disk under ``name`` and the examples' data key (ids, texts,
    scores), so scoring every candidate with a reward model runs once. A file whose ids or models
    no longer match is recomputed; writes are atomic."""
    models = example_models(examples)
    ids = [str(ex.get("id", n)) for n, ex in enumerate(examples)]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "rewards"
    digest = hashlib.sha256(f"{name}\n{data_key(examples)}".encode()).hexdigest()[:16]
    path = Path(root) if root is not None else cache_dir() / "zooter" / "rewards"
    path = path / f"{slug}-{digest}.json"
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("ids") == ids and tuple(stored.get("models", ())) == models:
            return np.array(stored["rewards"], dtype=float)
    rewards = _check_rewards(compute(examples), len(examples), len(models))
    atomic_write_json(path, {"name": name, "ids": ids, "models": list(models), "rewards": rewards.tolist()})
    return rewards


def rmr_choices(rewards: np.ndarray) -> list[int]:
    """Reward-model ranking (RMR): run all N models, keep the candidate with the highest reward
    (first of equals). With a reference-reading reward this is the oracle."""
    return [int(k) for k in np.argmax(_check_rewards(rewards), axis=1)]


def _check_rewards(rewards: Any, n: int | None = None, n_models: int | None = None) -> np.ndarray:
    values = np.asarray(rewards, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"rewards must be a non-empty [n_queries, N] array, got shape {values.shape}")
    if n is not None and values.shape[0] != n:
        raise ValueError(f"got rewards for {values.shape[0]} queries but {n} examples")
    if n_models is not None and values.shape[1] != n_models:
        raise ValueError(f"got {values.shape[1]} rewards per query but {n_models} models")
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise ValueError(f"query {int(bad[0])} has non-finite rewards {values[bad[0]].tolist()}")
    return values


# --------------------------------------------------------------------------------------------
# labels: per-query softmax of normalised rewards; entropy


def reward_labels(rewards: np.ndarray, temperature: float = 1.0, *, normalize: str = "zscore") -> np.ndarray:
    """Each query's label distribution over the N models: softmax(normalised rewards / temperature).

    ``normalize="zscore"`` (default): per query, (r - mean) / std over the N models (population
    std). The paper normalises each query's rewards before its temperature softmax; the z-score makes
    the temperature mean the same for any reward scale (BLEU 0-100, BERTScore 0-1, reward-model
    logits) and for any query. A query whose rewards are all equal gets the uniform label.
    ``"none"``: softmax(r / temperature) on the raw rewards. Lower temperature = sharper labels."""
    values = _check_rewards(rewards)
    if not (_is_number(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if normalize == "zscore":
        centred = values - values.mean(axis=1, keepdims=True)
        std = values.std(axis=1, keepdims=True)
        flat = std <= 1e-12 * np.maximum(1.0, np.abs(values).max(axis=1, keepdims=True))
        values = np.where(flat, 0.0, centred / np.where(flat, 1.0, std))
    logits = values / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_labels(labels: Any, what: str = "labels") -> np.ndarray:
    values = _check_rewards(labels)
    if (values < -1e-9).any() or not np.allclose(values.sum(axis=1), 1.0, atol=1e-6):
        row = int(np.flatnonzero((values < -1e-9).any(axis=1) | ~np.isclose(values.sum(axis=1), 1.0, atol=1e-6))[0])
        raise ValueError(f"{what} must be distributions (non-negative, each row summing to 1); row {row} is "
                         f"{values[row].tolist()} (pass rewards through reward_labels first)")
    return np.clip(values, 0.0, None)


def reward_entropy(values: np.ndarray, temperature: float | None = None, *, normalize: str = "zscore") -> np.ndarray:
    """Per-query entropy (nats; at most log N) of the label distribution: how undecided the reward
    is between the models. Pass labels, or rewards with a ``temperature`` to turn them into labels
    first (:func:`reward_labels`). The paper relates it to how well routing does."""
    labels = _check_labels(values) if temperature is None else reward_labels(values, temperature, normalize=normalize)
    logs = np.log(np.where(labels > 0, labels, 1.0))
    return -(labels * logs).sum(axis=1)


# --------------------------------------------------------------------------------------------
# tags and tag-based label enhancement


def data_tags(examples: Sequence[Mapping[str, Any]], which: str = "all") -> list[tuple[str, ...]]:
    """The examples' own ``tags`` (the seed category, e.g. ``('open_qa',)``): all of them
    (``which="all"``) or the first only (``"first"``). An example without tags is an error naming it
    (use :func:`cluster_tags` for untagged data)."""
    if which not in ("all", "first"):
        raise ValueError(f"which must be 'all' or 'first', got {which!r}")
    if isinstance(examples, Mapping):
        raise ValueError("pass a list of examples, not one example")
    out = []
    for n, ex in enumerate(examples):
        tags = ex.get("tags")
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        tags = [str(t) for t in tags if str(t).strip()]
        if not tags:
            raise ValueError(f"example {ex.get('id', n)!r} has no tags; use cluster_tags for untagged data")
        out.append(tuple(dict.fromkeys(tags[:1] if which == "first" else tags)))
    return out


def cluster_tags(texts: Sequence[str], k: int, seed: int = 0, encoder: str | LoadedModel = "minilm-l6", *,
                 batch_size: int = 64, max_length: int = 256, device: str | torch.device = "cpu") -> list[int]:
    """Offline tagger for data without tags: KMeans (scikit-learn, ``random_state=seed``, 10 starts)
    on mean-pooled, L2-normalised sentence embeddings (:func:`~blender_lib.models.embed_texts`).
    Cluster ids are renumbered in order of first appearance, so the same texts and seed give the
    same tags. Pass the queries' source texts (instruction + input)."""
    from sklearn.cluster import KMeans

    if isinstance(texts, str):
        raise ValueError("pass a list of texts, not one text")
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to cluster")
    for n, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {n} is empty: nothing to embed")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(texts):
        raise ValueError(f"k must be an integer between 1 and the number of texts ({len(texts)}), got {k!r}")
    loaded = encoder if isinstance(encoder, LoadedModel) else load_model(encoder, kind="encoder", device=device,
                                                                         dtype="float32")
    vectors = embed_texts(loaded, texts, batch_size=batch_size, max_length=max_length).numpy().astype(np.float64)
    raw = KMeans(n_clusters=int(k), random_state=seed, n_init=10).fit_predict(vectors)
    renumber: dict[int, int] = {}
    return [renumber.setdefault(int(c), len(renumber)) for c in raw]


TAG_KINDS = ("data", "cluster")


def split_tags(kind: str, parts: Sequence[Sequence[Mapping[str, Any]]], *, n_clusters: int = 8,
               seed: int = 0) -> list[list[Any]]:
    """The tags of each part's queries (train, val, test, ...): ``"data"``, the examples' own tags
    (:func:`data_tags`), or ``"cluster"``, KMeans over the queries of all parts at once
    (:func:`cluster_tags`), so that a cluster id means the same thing in every part."""
    if kind == "data":
        return [list(data_tags(part)) for part in parts]
    if kind == "cluster":
        clusters = cluster_tags([source_text(ex) for part in parts for ex in part], n_clusters, seed)
        out, start = [], 0
        for part in parts:
            out.append(clusters[start : start + len(part)])
            start += len(part)
        return out
    raise ValueError(f"tags must be one of {list(TAG_KINDS)}, got {kind!r}")


def _tag_sets(tags: Sequence[Any], n: int) -> list[tuple[Any, ...]]:
    if isinstance(tags, str) or len(tags) != n:
        raise ValueError(f"got {1 if isinstance(tags, str) else len(tags)} tag entries for {n} queries")
    out = []
    for row, item in enumerate(tags):
        blank = [t for t in ([item] if isinstance(item, str) else item if isinstance(item, (list, tuple)) else [])
                 if isinstance(t, str) and not t.strip()]
        if blank:
            raise ValueError(f"tag entry {row} holds an empty tag {blank[0]!r}; give a query without tags None or []")
        if item is None:
            out.append(())
        elif isinstance(item, (str, int, np.integer)):
            out.append((item.item() if isinstance(item, np.integer) else item,))
        elif isinstance(item, Sequence):
            out.append(tuple(dict.fromkeys(t.item() if isinstance(t, np.integer) else t for t in item)))
        else:
            raise ValueError(f"a tag entry must be a tag (str or int) or a list of tags, got {item!r}")
    return out


def tag_means(labels: np.ndarray, tags: Sequence[Any]) -> dict[Any, np.ndarray]:
    """Each tag's mean label over the queries that carry it."""
    values = _check_labels(labels)
    groups: dict[Any, list[int]] = {}
    for row, query_tags in enumerate(_tag_sets(tags, len(values))):
        for tag in query_tags:
            groups.setdefault(tag, []).append(row)
    return {tag: values[rows].mean(axis=0) for tag, rows in groups.items()}


def tag_table(labels: np.ndarray, tags: Sequence[Any], models: Sequence[str]) -> pd.DataFrame:
    """Tag means as a table: one row per tag, most frequent first, named "tag (queries)", one
    column per model: the per-tag labels that enhancement mixes in."""
    means = tag_means(labels, tags)
    sizes = pd.Series([t for ts in _tag_sets(tags, len(labels)) for t in ts]).value_counts(sort=False)
    sizes = sizes.sort_values(ascending=False, kind="stable")
    if len(models) != len(next(iter(means.values()), models)):
        raise ValueError(f"got {len(models)} model names for labels of {len(next(iter(means.values())))} models")
    return pd.DataFrame([means[t] for t in sizes.index], index=[f"{t} ({n})" for t, n in sizes.items()],
                        columns=list(models))


def enhance_labels(labels: np.ndarray, tags: Sequence[Any], beta: float) -> np.ndarray:
    """Tag-based label enhancement: (1 - beta) · the query's label + beta · the mean label of the
    queries sharing its tag. Rewards are noisy per query; a tag's mean is a steadier signal of
    which model is good at that kind of query (the paper's best beta: 0.3).

    ``tags``: one entry per query, a tag (str, or an int cluster id from :func:`cluster_tags`) or a
    list of tags. A query with several tags uses the mean of its tags' means; a query with none
    keeps its own label. beta 0 returns the labels, beta 1 the tag means."""
    values = _check_labels(labels)
    if not (_is_number(beta) and 0.0 <= beta <= 1.0):
        raise ValueError(f"beta must be a number in [0, 1], got {beta!r}")
    sets = _tag_sets(tags, len(values))
    means = tag_means(values, tags)
    out = values.copy()
    for row, query_tags in enumerate(sets):
        if query_tags:
            shared = np.mean([means[t] for t in query_tags], axis=0)
            out[row] = (1.0 - beta) * values[row] + beta * shared
    return out


# --------------------------------------------------------------------------------------------
# the router: encoder + N-way head on the pooled query, KL to the labels


@dataclass(frozen=True)
class RouterConfig(EncoderConfig):
    """A ZOOTER router. Paper: mdeberta-v3-base; offline: MiniLM. ``models`` = the N models in
    label order (empty: taken from the training examples by :func:`train_router`). lr 1e-4 with a
    fresh head; a router reads only the query, so an epoch is cheap and 3 are the default."""

    models: tuple[str, ...] = ()
    lr: float = 1e-4
    epochs: int = 3
    batch_size: int = 16
    head_dropout: float = 0.1

    KIND: ClassVar[str] = "router"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "models", tuple(self.models))
        if self.models:
            if any(not isinstance(m, str) or not m.strip() for m in self.models) or \
                    len(set(self.models)) != len(self.models):
                raise ValueError(f"models must be distinct non-empty names, got {list(self.models)}")
            if len(self.models) < 2:
                raise ValueError(f"a router needs at least two models to choose between, got {list(self.models)}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")


@dataclass
class _RouterItem:
    ids: tuple[int, ...]  # the framed query
    label: np.ndarray  # [N]: the query's label over the models


class RouterModel(EncoderModel):
    """Encoder + a 2-layer head (dropout, Linear(H, H), tanh, dropout, Linear(H, N)) on the pooled
    ``[CLS] query [SEP]``; trained with KL(label ‖ softmax(logits)). :meth:`route` sends each query
    to the model of highest probability (first of equals). Saved and loaded like the rerankers
    (``save_pretrained`` / ``from_pretrained``)."""

    KIND = "router"
    CONFIG = RouterConfig
    WHAT = "router"

    def __init__(self, encoder: nn.Module, tokenizer: Any, config: RouterConfig) -> None:
        super().__init__(encoder, tokenizer, config)
        if len(config.models) < 2:
            raise ValueError(f"a router needs the names of at least two models (config.models), got "
                             f"{list(config.models)}")
        hidden, drop = encoder.config.hidden_size, config.head_dropout
        self.head = nn.Sequential(nn.Dropout(drop), nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(drop),
                                  nn.Linear(hidden, len(config.models)))

    @property
    def models(self) -> tuple[str, ...]:
        return self.config.models

    def num_parameters(self) -> int:
        """Parameters the router touches per query (encoder + head), for :func:`cost_table`."""
        return sum(p.numel() for p in self.parameters())

    def encode(self, query: str) -> tuple[int, ...]:
        return (*self.prefix, *self.tokens(query, self.config.source_max_length), *self.suffix)

    # -- training: one item per query, its full label row (see RouterRecipe)

    def make_item(self, query: str, label: np.ndarray) -> _RouterItem:
        return _RouterItem(self.encode(query), label)

    def collate(self, items: list[_RouterItem]) -> dict[str, torch.Tensor]:
        """The queries (padded, sorted by length) and their full label rows."""
        chosen = sorted(items, key=lambda it: len(it.ids))
        batch = self.pad([it.ids for it in chosen])
        batch["labels"] = torch.tensor(np.stack([it.label for it in chosen]), dtype=torch.float)
        return batch

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(input_ids, attention_mask)).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over queries of KL(label ‖ softmax(logits))."""
        return kl_loss(self.logits(input_ids, attention_mask), labels)

    # -- inference

    @torch.inference_mode()
    def probabilities(self, queries: Sequence[str], *, batch_size: int | None = None,
                      progress: bool = False) -> np.ndarray:
        """[n_queries, N] routing distribution, columns in :attr:`models` order."""
        if isinstance(queries, str):
            raise ValueError("pass a list of queries, not one query (or use route_one)")
        for n, query in enumerate(queries):
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"query {n} is empty")
        unique = list(dict.fromkeys(queries))
        encoded = [self.encode(q) for q in unique]
        probs = np.zeros((len(unique), len(self.models)))
        for idx in self.eval_batches([len(e) for e in encoded], batch_size, "router", progress):
            batch = {k: v.to(self.device) for k, v in self.pad([encoded[k] for k in idx]).items()}
            probs[idx] = torch.softmax(self.logits(**batch), dim=-1).cpu().numpy()
        row = {q: k for k, q in enumerate(unique)}
        return probs[[row[q] for q in queries]] if queries else probs

    def route(self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> list[str]:
        """The model each query goes to (batched): argmax of :meth:`probabilities`, first of equals."""
        probs = self.probabilities(queries, batch_size=batch_size, progress=progress)
        return [self.models[int(k)] for k in np.argmax(probs, axis=1)] if len(probs) else []

    def route_one(self, query: str) -> str:
        """The model one query goes to."""
        return self.route([query])[0]


def kl_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(labels ‖ softmax(logits)), averaged over queries (0 · log 0 = 0): ZOOTER's distillation loss."""
    return F.kl_div(F.log_softmax(logits.float(), dim=-1), labels.float(), reduction="batchmean")


# --------------------------------------------------------------------------------------------
# training the router: queries and their labels, through blender_lib.training


@dataclass
class RoutingSet:
    """What a router learns from or is validated on: queries, their ids and a label row per query
    ([n, N], columns in ``models`` order)."""

    ids: list[str]
    queries: list[str]
    labels: np.ndarray
    models: tuple[str, ...]

    @classmethod
    def from_examples(cls, examples: Sequence[Mapping[str, Any]], labels: np.ndarray,
                      models: Sequence[str] | None = None) -> RoutingSet:
        """The examples' queries (:func:`~blender_lib.examples.source_text`) with their labels;
        the examples must list ``models`` (default: their own) in that order."""
        found = example_models(examples)
        models = tuple(models) if models else found
        if models != found:
            raise ValueError(f"the examples' models {list(found)} are not the router's {list(models)} (same order)")
        values = _check_labels(labels)
        if values.shape != (len(examples), len(models)):
            raise ValueError(f"labels have shape {values.shape}, expected ({len(examples)}, {len(models)}): one row "
                             f"per example, one column per model")
        queries = [source_text(ex) for ex in examples]  # example_models has checked them
        return cls([str(ex.get("id", n)) for n, ex in enumerate(examples)], queries, values, models)

    def key(self) -> str:
        """A short hash of the queries, labels and models (a router's cache folder is keyed by it)."""
        blob = json.dumps([self.ids, self.queries, self.labels.tolist(), list(self.models)])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.queries)


def routing_validation(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """How good the routed models are under ``labels`` ([n, N]): the mean rank of the routed model
    among the N (1 = best, ties share) and its mean label."""
    choices = np.argmax(probabilities, axis=1)  # first of equals, as route()
    ranks = [ranks_from_scores(row)[k] for row, k in zip(labels, choices)]
    return {"examples": float(len(labels)),
            "top1_mean_metric_rank": float(np.mean(ranks)) if ranks else math.nan,
            "top1_label": float(np.mean(labels[np.arange(len(labels)), choices])) if len(labels) else math.nan}


@dataclass
class RouterRecipe:
    """The router for :func:`blender_lib.training.train`: every query with its full label row per
    epoch, :func:`kl_loss`, the best epoch by the lowest mean validation rank of the routed model
    (ties keep the earlier one)."""

    config: RouterConfig
    train_set: RoutingSet
    val_set: RoutingSet | None
    kind: str = "router"
    weights_folder: str = "model"
    skipped_examples: int = 0  # a router trains on every query

    @property
    def data_key(self) -> str:
        val = self.val_set.key() if self.val_set is not None else ""
        return hashlib.sha256(f"{self.train_set.key()}:{val}".encode()).hexdigest()[:16]

    @property
    def items_per_epoch(self) -> int:
        return len(self.train_set)

    def build_model(self) -> RouterModel:
        return RouterModel.from_backbone(self.config)

    def training_data(self, model: RouterModel) -> Shuffled:
        items = [model.make_item(q, row) for q, row in zip(self.train_set.queries, self.train_set.labels)]
        return Shuffled(items, self.config.seed)

    def collate(self, model: RouterModel) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
        return model.collate

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch)

    def validate(self, model: RouterModel) -> dict[str, float]:
        if self.val_set is None:
            return {}
        return routing_validation(self.val_set.labels, model.probabilities(self.val_set.queries))

    def better(self, val: Mapping[str, float], best: Mapping[str, float]) -> bool:
        return improves(val, best, "top1_mean_metric_rank", higher_is_better=False)

    def shown(self, val: Mapping[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in val.items() if k.startswith("top1_")}


def _router_recipe(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                   labels_train: np.ndarray, labels_val: np.ndarray | None, config: RouterConfig) -> RouterRecipe:
    if not isinstance(config, RouterConfig):
        raise TypeError(f"router training needs a RouterConfig, got {type(config).__name__}")
    models = example_models(train_examples)
    if len(models) < 2:
        raise ValueError(f"the examples have one model ({models[0]!r}): a router needs at least two to choose between")
    if config.models and tuple(config.models) != models:
        raise ValueError(f"config.models {list(config.models)} differ from the training examples' models "
                         f"{list(models)} (same order)")
    val_set = None
    if val_examples:
        if labels_val is None:
            raise ValueError("validation examples need labels_val (their un-enhanced reward labels): the best epoch "
                             "is the one whose routed model has the best validation label rank")
        val_set = RoutingSet.from_examples(val_examples, labels_val, models)
    return RouterRecipe(replace(config, models=models), RoutingSet.from_examples(train_examples, labels_train, models),
                        val_set)


def _cache_folder(recipe: RouterRecipe) -> Path:
    return cache_dir() / "zooter" / "routers" / f"router-{recipe.config.key(ignore=('epochs',))}-{recipe.data_key}"


def router_folder(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                  labels_train: np.ndarray, labels_val: np.ndarray | None = None,
                  config: RouterConfig | None = None) -> Path:
    """Where :func:`train_router` keeps a router when no ``out_dir`` is given: under the user cache,
    keyed by the config (less ``epochs``), the queries and the labels (so by beta too)."""
    return _cache_folder(_router_recipe(train_examples, val_examples, labels_train, labels_val, config or RouterConfig()))


def train_router(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                 labels_train: np.ndarray, labels_val: np.ndarray | None = None, config: RouterConfig | None = None,
                 out_dir: str | Path | None = None, *, progress: bool = True, resume: bool = True) -> TrainReport:
    """Distil labels ([n, N], e.g. :func:`enhance_labels` of :func:`reward_labels`) into a router.

    Trains through :func:`blender_lib.training.train`: seeds, AdamW with warmup, one checkpoint per
    epoch, resume after the last completed epoch, the best epoch on validation (lowest mean rank of
    the routed model under ``labels_val``; pass un-enhanced labels there) copied to ``out_dir/best``.
    Without ``out_dir`` the run lives in the cache (:func:`router_folder`). Load the result with
    ``RouterModel.from_pretrained(report.best_dir)``."""
    recipe = _router_recipe(train_examples, val_examples, labels_train, labels_val, config or RouterConfig())
    return train(recipe, Path(out_dir) if out_dir is not None else _cache_folder(recipe), progress=progress,
                 resume=resume)


def beta_sweep(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
               labels_train: np.ndarray, labels_val: np.ndarray | None, tags: Sequence[Any], betas: Sequence[float],
               config: RouterConfig | None = None, *, progress: bool = True) -> dict[float, TrainReport]:
    """One router per beta, everything else fixed (labels, tags, config, seed); each run is cached
    under its own labels, so a repeated sweep loads them."""
    if isinstance(betas, (int, float)) or not betas:
        raise ValueError(f"betas must be a non-empty list, got {betas!r}")
    enhanced = {float(b): enhance_labels(labels_train, tags, b) for b in betas}  # all validated before training
    return {b: train_router(train_examples, val_examples, labels, labels_val, config, progress=progress)
            for b, labels in enhanced.items()}


def choose_beta(val_rank: Mapping[float, float]) -> tuple[float, list[float]]:
    """The beta of the lowest validation rank of the routed model, and every beta tied with it (by
    ``np.isclose``). Of tied betas the smallest wins: no enhancement unless validation asks for it."""
    if not val_rank:
        raise ValueError("no betas to choose from")
    values = np.array(list(val_rank.values()), dtype=float)
    tied = sorted(float(b) for b, close in zip(val_rank, np.isclose(values, values.min())) if close)
    return tied[0], tied


def _candidate_models(router: RouterModel, examples: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Each example's candidate models, checked to be the router's models (in any order)."""
    out = []
    for n, ex in enumerate(examples):
        models = [str(c.get("model")) for c in ex["candidates"]]
        if sorted(models) != sorted(router.models):
            raise ValueError(f"example {ex.get('id', n)!r} has candidates of {models}, but the router routes to "
                             f"{list(router.models)}")
        out.append(models)
    return out


def router_scores(router: RouterModel, examples: Sequence[Mapping[str, Any]], *, batch_size: int | None = None,
                  progress: bool = False) -> Scores:
    """The routing probability of each example's candidates, in the example's own candidate order
    (matched by model name): a selector like the others, for ``evaluate_selection`` and the
    analysis tables. An example missing one of the router's models, or with one it does not know,
    is an error naming it."""
    sources, _ = check_examples(examples)
    models = _candidate_models(router, examples)
    probs = router.probabilities(sources, batch_size=batch_size, progress=progress)
    column = {m: k for k, m in enumerate(router.models)}
    return [np.array([row[column[m]] for m in ms], dtype=float) for ms, row in zip(models, probs)]


def routed_choices(router: RouterModel, examples: Sequence[Mapping[str, Any]], *,
                   batch_size: int | None = None) -> list[int]:
    """Per example, the index of the candidate of the model :meth:`RouterModel.route` sends the
    query to: score it with ``analysis.selection_table``, ``evaluate_selection`` or :func:`cost_table`."""
    sources, _ = check_examples(examples)
    models = _candidate_models(router, examples)
    return [ms.index(model) for ms, model in zip(models, router.route(sources, batch_size=batch_size))]


# --------------------------------------------------------------------------------------------
# cost accounting and the entropy analysis


def cost_table(examples: Sequence[Mapping[str, Any]], selections: Mapping[str, Sequence[int] | str], *,
               parameters: Mapping[str, float] | None = None, extra_parameters: Mapping[str, float] | None = None,
               seconds_per_token: Mapping[str, float] | None = None,
               extra_seconds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Inference cost per query of each method, averaged over the examples.

    ``selections``: method -> chosen candidate index per example (the method runs that one model:
    router, best single, random), or :data:`ALL` (it runs all N: RMR, oracle). Columns:

    - ``LLM calls / query``: 1, or N;
    - ``generated tokens / query``: the chosen candidate's ``n_tokens``, or the sum over all N;
    - ``parameters touched / query`` (with ``parameters``, model name -> parameter count): the chosen
      model's, or all N models', plus ``extra_parameters[method]`` (the router's for ZOOTER, the
      reward model's for RMR);
    - ``seconds / query`` (with ``seconds_per_token``, model name -> measured generation seconds per
      token): Σ over the models run of n_tokens × seconds per token, i.e. compute time with the
      generations run one after another, plus ``extra_seconds[method]`` (router or reward-model time
      per query, measured by the caller). No number is assumed here."""
    if isinstance(examples, Mapping):
        raise ValueError("pass a list of examples, not one example")
    if not examples:
        raise ValueError("no examples to account for")
    for name, extra in (("extra_parameters", extra_parameters), ("extra_seconds", extra_seconds)):
        unknown = sorted(set(extra or {}) - set(selections))
        if unknown:
            raise ValueError(f"{name} names methods {unknown} that are not in selections {list(selections)}")
    if extra_seconds and seconds_per_token is None:
        raise ValueError("extra_seconds needs seconds_per_token too (the generation time it adds to)")
    if extra_parameters and parameters is None:
        raise ValueError("extra_parameters needs parameters too (the models' counts it adds to)")
    tokens, models = [], []
    for n, ex in enumerate(examples):
        cands = ex.get("candidates") or []
        if not cands:
            raise ValueError(f"example {ex.get('id', n)!r} has no candidates")
        row = []
        for k, c in enumerate(cands):
            value = c.get("n_tokens")
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"example {ex.get('id', n)!r}, candidate {k} ({c.get('model')}) has no valid "
                                 f"n_tokens ({value!r})")
            row.append(float(value))
        tokens.append(row)
        models.append([str(c.get("model")) for c in cands])
    for name, table in (("parameters", parameters), ("seconds_per_token", seconds_per_token)):
        if table is not None:
            missing = sorted({m for ms in models for m in ms} - set(table))
            if missing:
                raise ValueError(f"{name} has no entry for model(s) {missing}")
    rows = {}
    for method, chosen in selections.items():
        if isinstance(chosen, str):
            if chosen != ALL:
                raise ValueError(f"selection of {method!r} must be a list of candidate indices or {ALL!r}, "
                                 f"got {chosen!r}")
            runs = [list(range(len(ms))) for ms in models]
        else:
            if len(chosen) != len(examples):
                raise ValueError(f"{method!r} chose for {len(chosen)} examples, expected {len(examples)}")
            runs = []
            for n, (k, ms) in enumerate(zip(chosen, models)):
                if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < len(ms):
                    raise ValueError(f"{method!r} chose candidate {k!r} for example "
                                     f"{examples[n].get('id', n)!r}, which has {len(ms)}")
                runs.append([int(k)])
        row = {"LLM calls / query": float(np.mean([len(r) for r in runs])),
               "generated tokens / query": float(np.mean([sum(t[k] for k in r) for t, r in zip(tokens, runs)]))}
        if parameters is not None:
            touched = [sum(float(parameters[ms[k]]) for k in r) for ms, r in zip(models, runs)]
            row["parameters touched / query"] = float(np.mean(touched)) + float((extra_parameters or {}).get(method, 0))
        if seconds_per_token is not None:
            seconds = [sum(t[k] * float(seconds_per_token[ms[k]]) for k in r) for t, ms, r in zip(tokens, models, runs)]
            row["seconds / query"] = float(np.mean(seconds)) + float((extra_seconds or {}).get(method, 0))
        rows[method] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def entropy_vs_quality(examples: Sequence[Mapping[str, Any]], labels: np.ndarray, choices: Sequence[int],
                       metric: str = "bertscore") -> pd.DataFrame:
    """One row per query: its label entropy, the model routed to, the routed answer's ``metric``,
    and the best candidate's: the data of the paper's entropy-versus-score analysis."""
    entropy = reward_entropy(labels)
    if len(entropy) != len(examples) or len(choices) != len(examples):
        raise ValueError(f"got {len(examples)} examples, {len(entropy)} label rows and {len(choices)} choices")
    rows = []
    for n, (ex, h, k) in enumerate(zip(examples, entropy, choices)):
        values = metric_values(ex, metric)
        if not 0 <= int(k) < len(values):
            raise ValueError(f"choice {k} for example {ex.get('id', n)!r}, which has {len(values)} candidates")
        sign = -1.0 if metric == GPT_RANK else 1.0  # report GPT-Rank as a rank
        rows.append({"id": ex.get("id", n), "tag": (ex.get("tags") or [""])[0], "entropy": float(h),
                     "model": ex["candidates"][int(k)]["model"], metric: sign * float(values[int(k)]),
                     f"best {metric}": sign * float(values.max())})
    return pd.DataFrame(rows)
