"""The model-based rerankers LLM-Blender's Tables 2 and 3 compare PairRanker against, behind one interface.

Every one is a :class:`TextScorer`: examples in, one float per candidate out, **higher = better**,
evaluated like every other selector (:func:`blender_lib.selectors.evaluate_selection`).

============================  ============================================================
selector                      what it is
============================  ============================================================
:class:`PseudoLogLikelihoodScorer`
                              MLM-scoring (Salazar et al., 2020): reference-free, the candidate
                              alone. With a masked LM, the real pseudo-log-likelihood; with a
                              causal LM (offline: SmolLM2), the candidate's log-likelihood as a
                              labelled stand-in (no masked-LM checkpoint ships offline)
:class:`SimCLSScorer`         SimCLS-style (Liu & Liu, 2021): dual encoder, cos(source, candidate),
                              trained by :func:`train_simcls` with SimCLS's ranking margin loss
:class:`SummaRerankerScorer`  SummaReranker-style (Ravaut et al., 2022): a cross-encoder on
                              [source; candidate] with one "is the best by metric k" output per
                              metric, trained by :func:`train_summareranker` (BCE); no mixture of
                              experts
:class:`RewardModelScorer`    a pointwise reward model (``AutoModelForSequenceClassification``,
                              one logit) on (question, answer); needs the hub for a real one
:class:`LMRewardScorer`       offline stand-in reward: an instruct LM's mean log-likelihood of
                              the candidate as its answer to the instruction
============================  ============================================================

Inputs are checked the same way for every selector: an example without candidates, an empty
candidate text or an empty instruction is an error naming the example; one candidate (N = 1) is
scored like any other (its argmax is 0). Unknown metrics are errors that list the known ones.

The trained rerankers are fine-tuned encoders (:mod:`blender_lib.encoders`) trained by
:func:`blender_lib.training.train`, PairRanker's loop: seeds, ``accelerate``, one checkpoint per
epoch, resume, and the best epoch on validation (lowest mean metric rank of the top-1) in
``out_dir/best``. Their defaults are sized for two CPU cores: MiniLM, source 128 / candidate 96
tokens, one epoch, and per input and epoch the best candidate plus two random others (LLM-Blender's
"top_random" sub-sampling); raise ``epochs`` and ``train_candidates`` on a GPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .encoders import EncoderConfig, EncoderModel
from .examples import (Scores, TrainingInput, check_examples, check_text_inputs, data_key, quality_from_table,
                       score_table, source_text, training_inputs)
from .generate import user_message
from .models import (LoadedModel, accepts_logits_to_keep, infer_kind, load_model, resolve_device, resolve_dtype,
                     resolve_model_path)
from .paths import cache_dir
from .selectors import evaluate_selection
from .training import Shuffled, TrainReport, improves, train


# --------------------------------------------------------------------------------------------
# model-based scorers: one base class


class TextScorer:
    """Base of the model-based selectors: ``score(sources, candidate_lists)`` on plain texts, and
    ``scorer(examples)`` on MixInstruct examples (checked by :func:`check_examples`)."""

    label: str = "scorer"

    def source_of(self, example: Mapping[str, Any]) -> str:
        return source_text(example)

    def score(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              progress: bool = False) -> Scores:
        raise NotImplementedError

    def __call__(self, examples: Sequence[Mapping[str, Any]], *, progress: bool = False) -> Scores:
        _, candidate_lists = check_examples(examples)
        return self.score([self.source_of(ex) for ex in examples], candidate_lists, progress=progress)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


def _ordered(items: Sequence[Any], length: Any) -> list[int]:
    return sorted(range(len(items)), key=lambda k: length(items[k]))


def _split(flat: np.ndarray, candidate_lists: Sequence[Sequence[str]]) -> Scores:
    out, at = [], 0
    for cands in candidate_lists:
        out.append(np.asarray(flat[at : at + len(cands)], dtype=float))
        at += len(cands)
    return out


# -- log-likelihood under a causal LM (shared by the causal MLM-scoring stand-in and LMRewardScorer)


@torch.inference_mode()
def _causal_target_logprobs(loaded: LoadedModel, pairs: Sequence[tuple[tuple[int, ...], tuple[int, ...]]],
                            batch_size: int, progress: bool = False, desc: str = "log-likelihood") -> list[np.ndarray]:
    """Per-token log p(target_t | context, target_<t) for each (context ids, target ids).

    Left padding puts every target at the end, so only the last positions' logits are computed;
    position ids count real tokens only. Identical pairs run once; batches are length-sorted."""
    unique = list(dict.fromkeys(pairs))
    if any(not target for _, target in unique):
        raise ValueError("a candidate tokenizes to no tokens: there is nothing to score")
    if any(not context for context, _ in unique):
        raise ValueError("a causal LM needs a context token before the candidate (its tokenizer has no BOS or EOS)")
    lookup: dict[Any, np.ndarray] = {}
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    trims = accepts_logits_to_keep(loaded.model)
    order = _ordered(unique, lambda p: len(p[0]) + len(p[1]))
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress):
        batch = [unique[k] for k in order[start : start + batch_size]]
        lengths = [len(c) + len(t) for c, t in batch]
        width = max(lengths)
        ids = torch.tensor([[pad_id] * (width - n) + [*c, *t] for (c, t), n in zip(batch, lengths)])
        attention = torch.tensor([[0] * (width - n) + [1] * n for n in lengths])
        keep = max(len(t) for _, t in batch) + 1
        kwargs = {"logits_to_keep": keep} if trims else {}  # only the target positions' logits
        logits = loaded.model(input_ids=ids.to(loaded.device), attention_mask=attention.to(loaded.device),
                              position_ids=(attention.cumsum(-1) - 1).clamp(min=0).to(loaded.device), **kwargs).logits
        log_probs = torch.log_softmax(logits[:, -keep:-1].float(), dim=-1)
        token_lp = log_probs.gather(-1, ids[:, -(keep - 1):].to(log_probs.device).unsqueeze(-1)).squeeze(-1)
        for row, pair in enumerate(batch):
            lookup[pair] = token_lp[row, keep - 1 - len(pair[1]):].cpu().numpy().astype(float)
    return [lookup[p] for p in pairs]


def _start_ids(tokenizer: Any) -> tuple[int, ...]:
    """A start-of-text context so the first candidate token is scored too: the tokenizer's BOS
    token, else its end-of-text token (GPT-2 convention), else none."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return (int(token_id),)
    return ()


def _load_causal(model: str | LoadedModel, device: str | torch.device, dtype: str | torch.dtype | None,
                 what: str) -> LoadedModel:
    loaded = model if isinstance(model, LoadedModel) else load_model(model, kind="causal", device=device, dtype=dtype)
    if loaded.kind != "causal":
        raise ValueError(f"{what} needs a causal LM, got {loaded.name!r} of kind {loaded.kind!r}")
    return loaded


def _check_sizes(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


class PseudoLogLikelihoodScorer(TextScorer):
    """MLM-scoring (Salazar et al., 2020), reference-free: the score reads the candidate alone.

    ``mode == "mlm"`` (any ``AutoModelForMaskedLM`` whose checkpoint has its masked-LM head): the
    pseudo-log-likelihood PLL(w) = Σ_t log p(w_t | w with token t masked), one masked copy per
    token, the copies of all candidates batched together (``batch_size`` copies per forward).

    ``mode == "causal"`` (a causal LM: the offline stand-in, SmolLM2): Σ_t log p(w_t | w_<t) after a
    start-of-text token. No masked-LM checkpoint ships offline (the packaged MiniLM is a sentence
    encoder without its MLM head, and loading it is refused: the head would be random), so the
    chapter's offline row is "LM-scoring (causal SmolLM2 stand-in for MLM-scoring)".

    ``length_normalized=True`` (default) divides by the number of scored tokens: a mean per token,
    so short candidates are not favoured merely for being short. Candidates keep their first
    ``max_length`` tokens. ``batch_size``: masked copies per forward (default 64) or, for a causal
    LM, texts per forward (default 8)."""

    OFFLINE_MODEL = "smollm2-135m-instruct"
    PAPER_MODEL = "roberta-base"  # a Salazar et al. family model; LLM-Blender does not name its checkpoint

    def __init__(self, model: str | LoadedModel = OFFLINE_MODEL, *, length_normalized: bool = True,
                 max_length: int = 128, batch_size: int | None = None, device: str | torch.device = "auto",
                 dtype: str | torch.dtype | None = "auto") -> None:
        _check_sizes(max_length=max_length, batch_size=batch_size or 1)
        self.length_normalized, self.max_length = length_normalized, max_length
        if isinstance(model, LoadedModel):
            self.mode = "causal" if model.kind == "causal" else "mlm"
            if self.mode == "mlm":
                raise ValueError("pass a masked LM by name or folder (its head is checked on loading)")
            self.loaded = model
        else:
            path, known_kind = resolve_model_path(model)
            from transformers import AutoConfig

            try:
                config = AutoConfig.from_pretrained(path)
            except (OSError, ValueError) as err:
                raise ValueError(f"unknown model {model!r}: not a packaged offline model, a local folder or a "
                                 f"reachable hub id ({type(err).__name__})") from err
            kind = known_kind if known_kind != "auto" else infer_kind(config)
            self.mode = "causal" if kind == "causal" else "mlm"
            self.loaded = (_load_causal(model, device, dtype, "MLM-scoring") if self.mode == "causal"
                           else self._load_masked_lm(model, path, device, dtype))
        self.batch_size = batch_size or (64 if self.mode == "mlm" else 8)
        name = Path(self.loaded.name).name
        self.label = (f"MLM-scoring ({name} pseudo-log-likelihood)" if self.mode == "mlm"
                      else f"LM-scoring (causal {name} stand-in for MLM-scoring)")

    @classmethod
    def paper(cls, **kwargs: Any) -> PseudoLogLikelihoodScorer:
        """A real masked LM from the hub (needs internet or its cache)."""
        return cls(cls.PAPER_MODEL, **kwargs)

    @staticmethod
    def _load_masked_lm(name: str, path: str, device: str | torch.device,
                        dtype: str | torch.dtype | None) -> LoadedModel:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        try:
            model, info = AutoModelForMaskedLM.from_pretrained(path, dtype=torch_dtype, output_loading_info=True)
        except ValueError as err:  # an architecture without a masked-LM class
            raise ValueError(f"{name!r} is neither a causal LM nor a masked LM: {err}") from err
        missing = [k for k in info.get("missing_keys", ()) if "position_ids" not in k]
        if missing:
            raise ValueError(f"{name!r} has no trained masked-LM head (missing weights {sorted(missing)[:4]}...): its "
                             f"pseudo-log-likelihood would come from a random head. Use a real masked LM, or a causal "
                             f"LM for the LM-scoring stand-in")
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.mask_token_id is None:
            raise ValueError(f"the tokenizer of {name!r} has no mask token")
        model.to(torch_device).eval()
        return LoadedModel(name=name, path=path, kind="encoder", model=model, tokenizer=tokenizer,
                           device=torch_device, dtype=torch_dtype)

    def score(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              progress: bool = False) -> Scores:
        """Sources are checked but not read: MLM-scoring is reference- and source-free."""
        check_text_inputs(sources, candidate_lists)
        texts = [t for cands in candidate_lists for t in cands]
        unique = list(dict.fromkeys(texts))
        token_lps = self._pll(unique, progress) if self.mode == "mlm" else self._causal(unique, progress)
        value = {t: float(lp.mean() if self.length_normalized else lp.sum()) for t, lp in zip(unique, token_lps)}
        return _split(np.array([value[t] for t in texts]), candidate_lists)

    def _causal(self, texts: list[str], progress: bool) -> list[np.ndarray]:
        tok = self.loaded.tokenizer
        start = _start_ids(tok)
        pairs = [(start, tuple(tok(t, add_special_tokens=False)["input_ids"][: self.max_length])) for t in texts]
        return _causal_target_logprobs(self.loaded, pairs, self.batch_size, progress, "LM-scoring")

    @torch.inference_mode()
    def _pll(self, texts: list[str], progress: bool) -> list[np.ndarray]:
        tok, model, device = self.loaded.tokenizer, self.loaded.model, self.loaded.device
        encoded = [tok(t, truncation=True, max_length=self.max_length + tok.num_special_tokens_to_add(),
                       return_special_tokens_mask=True) for t in texts]
        # one masked copy per (text, scored position); copies of similar length share a batch
        copies = [(n, p) for n, enc in enumerate(encoded)
                  for p, special in enumerate(enc["special_tokens_mask"]) if not special]
        if len({n for n, _ in copies}) < len(texts):
            raise ValueError("a candidate tokenizes to no tokens: there is nothing to score")
        copies.sort(key=lambda c: len(encoded[c[0]]["input_ids"]))
        token_lp: list[dict[int, float]] = [{} for _ in texts]
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        for start in tqdm(range(0, len(copies), self.batch_size), desc="MLM-scoring", disable=not progress):
            batch = copies[start : start + self.batch_size]
            width = max(len(encoded[n]["input_ids"]) for n, _ in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            types = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (n, p) in enumerate(batch):
                seq = encoded[n]["input_ids"]
                ids[row, : len(seq)] = torch.tensor(seq)
                attention[row, : len(seq)] = 1
                if "token_type_ids" in encoded[n]:
                    types[row, : len(seq)] = torch.tensor(encoded[n]["token_type_ids"])
            positions = torch.tensor([p for _, p in batch])
            originals = ids[torch.arange(len(batch)), positions].clone()
            ids[torch.arange(len(batch)), positions] = tok.mask_token_id
            kwargs = {"token_type_ids": types.to(device)} if "token_type_ids" in encoded[0] else {}
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device), **kwargs).logits
            masked = logits[torch.arange(len(batch), device=logits.device), positions.to(logits.device)].float()
            lp = torch.log_softmax(masked, dim=-1).gather(-1, originals.to(masked.device)[:, None])[:, 0]
            for (n, p), value in zip(batch, lp.tolist()):
                token_lp[n][p] = value
        return [np.array([lps[p] for p in sorted(lps)], dtype=float) for lps in token_lp]


class LMRewardScorer(TextScorer):
    """Offline stand-in for a reward model: an instruct LM's mean log-likelihood of the candidate as
    its answer, log p(candidate | chat prompt of the instruction) / |candidate|.

    The prompt is the tokenizer's chat template with the instruction (and input) as the user turn, as
    the candidates were generated; a base model without a template gets "Question: ...\\nAnswer:".
    Not a trained reward: it measures how natural the answer is to this LM, a proxy that also rewards
    fluent, generic text. Instructions keep their first ``source_max_length`` tokens and candidates
    their first ``max_length``."""

    OFFLINE_MODEL = "smollm2-135m-instruct"

    def __init__(self, model: str | LoadedModel = OFFLINE_MODEL, *, max_length: int = 128,
                 source_max_length: int = 256, batch_size: int = 8, device: str | torch.device = "auto",
                 dtype: str | torch.dtype | None = "auto") -> None:
        _check_sizes(max_length=max_length, source_max_length=source_max_length, batch_size=batch_size)
        self.loaded = _load_causal(model, device, dtype, "LMRewardScorer")
        self.max_length, self.source_max_length, self.batch_size = max_length, source_max_length, batch_size
        self.chat = bool(getattr(self.loaded.tokenizer, "chat_template", None))
        self.label = f"LM reward ({Path(self.loaded.name).name} log-likelihood stand-in for a reward model)"

    def source_of(self, example: Mapping[str, Any]) -> str:
        return user_message(example.get("instruction") or "", example.get("input") or "")

    def _context(self, source: str) -> tuple[int, ...]:
        tok = self.loaded.tokenizer
        ids = tok(source, add_special_tokens=False)["input_ids"]
        if len(ids) > self.source_max_length:
            source = tok.decode(ids[: self.source_max_length])
        if self.chat:
            ids = tok.apply_chat_template([{"role": "user", "content": source}], add_generation_prompt=True,
                                          tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, Mapping) else ids
            return tuple(int(i) for i in ids)
        return (*_start_ids(tok)[:1], *tok(f"Question: {source}\nAnswer:", add_special_tokens=False)["input_ids"])

    def score(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              progress: bool = False) -> Scores:
        check_text_inputs(sources, candidate_lists)
        tok = self.loaded.tokenizer
        contexts = {s: self._context(s) for s in dict.fromkeys(sources)}
        lead = "" if self.chat else " "
        pairs = [(contexts[s], tuple(tok(lead + c, add_special_tokens=False)["input_ids"][: self.max_length]))
                 for s, cands in zip(sources, candidate_lists) for c in cands]
        token_lps = _causal_target_logprobs(self.loaded, pairs, self.batch_size, progress, "LM reward")
        return _split(np.array([lp.mean() for lp in token_lps]), candidate_lists)


class RewardModelScorer(TextScorer):
    """A pointwise reward model: an ``AutoModelForSequenceClassification`` with one logit, reading
    (question, answer) as a text pair, the way OpenAssistant's reward models are used. The paper
    profile's :attr:`PAPER_MODEL` loads from the hub; offline no reward model ships (use
    :class:`LMRewardScorer`). Pairs longer than ``max_length`` tokens are truncated (longest first)."""

    PAPER_MODEL = "OpenAssistant/reward-model-deberta-v3-large-v2"

    def __init__(self, model: str = PAPER_MODEL, *, max_length: int = 512, batch_size: int = 16,
                 device: str | torch.device = "auto", dtype: str | torch.dtype | None = "auto") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        _check_sizes(max_length=max_length, batch_size=batch_size)
        path, _ = resolve_model_path(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=self.dtype)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot load {model!r} as a reward model (AutoModelForSequenceClassification): "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
        if self.model.config.num_labels != 1:
            raise ValueError(f"{model!r} has {self.model.config.num_labels} outputs; a reward model has one logit")
        self.model.to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_length, self.batch_size, self.name = max_length, batch_size, model
        self.label = f"reward model ({Path(model).name})"

    @torch.inference_mode()
    def score(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              progress: bool = False) -> Scores:
        check_text_inputs(sources, candidate_lists)
        pairs = [(s, c) for s, cands in zip(sources, candidate_lists) for c in cands]
        unique = list(dict.fromkeys(pairs))
        order = _ordered(unique, lambda p: len(p[0]) + len(p[1]))
        rewards: dict[tuple[str, str], float] = {}
        for start in tqdm(range(0, len(order), self.batch_size), desc="reward model", disable=not progress):
            batch = [unique[k] for k in order[start : start + self.batch_size]]
            enc = self.tokenizer([q for q, _ in batch], [a for _, a in batch], truncation=True,
                                 max_length=self.max_length, padding=True, return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits[:, 0].float().cpu().numpy()
            rewards.update(zip(batch, logits.tolist()))
        return _split(np.array([rewards[p] for p in pairs]), candidate_lists)


# --------------------------------------------------------------------------------------------
# trained rerankers: configuration


@dataclass(frozen=True)
class RerankerConfig(EncoderConfig):
    """A trained reranker: an :class:`~blender_lib.encoders.EncoderConfig` plus what "better" means
    (``metrics``), the candidate budget and how many candidates an input trains on per epoch."""

    metrics: tuple[str, ...] = ("bleu", "rougeL", "bertscore")  # what "better" means in training
    candidate_max_length: int = 96
    train_candidates: int | None = 3  # per input and epoch: the best + random others (None: all)

    KIND: ClassVar[str] = "baseline"
    SIZES: ClassVar[tuple[str, ...]] = (*EncoderConfig.SIZES, "candidate_max_length")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "metrics", tuple(self.metrics))  # JSON gives lists back
        if isinstance(self.metrics, str) or not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"metrics must be a non-empty list of distinct names, got {self.metrics}")
        if self.train_candidates is not None and int(self.train_candidates) < 2:
            raise ValueError(f"train_candidates must be >= 2 (or None for all), got {self.train_candidates}")


@dataclass(frozen=True)
class SimCLSConfig(RerankerConfig):
    """SimCLS: margin λ = 0.01 per rank step and the reference ("gold") term with weight 1 (the
    defaults of SimCLS's code; LLM-Blender's reimplementation used λ = 1/N); lr 5e-5 for MiniLM."""

    margin: float = 0.01
    gold_margin: float = 0.0
    gold_weight: float = 1.0  # 0 drops the reference term (the candidate term alone)

    KIND: ClassVar[str] = "simcls"


@dataclass(frozen=True)
class SummaRerankerConfig(RerankerConfig):
    """SummaReranker without the mixture of experts: one shared head, one output per metric.
    lr 2e-4: its head starts from random, and at 5e-5 one epoch on 315 inputs barely moved the BCE."""

    lr: float = 2e-4
    head_dropout: float = 0.1

    KIND: ClassVar[str] = "summareranker"


def cache_folder(config: RerankerConfig, train_examples: Sequence[Mapping[str, Any]],
                 val_examples: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Where :func:`train_or_load` keeps a trained baseline: under the user cache dir, keyed by the
    config (less ``epochs``, so asking for more epochs resumes there) and the training and validation data."""
    return _folder(config, _run_key(train_examples, val_examples))


def _folder(config: RerankerConfig, run_key: str) -> Path:
    return cache_dir() / "baselines" / f"{config.KIND}-{config.key(ignore=('epochs',))}-{run_key}"


def _run_key(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]]) -> str:
    return hashlib.sha256(f"{data_key(train_examples)}:{data_key(val_examples)}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# trained rerankers: models


def simcls_loss(cos: torch.Tensor, quality: torch.Tensor, margin: float = 0.01, *, gold_cos: torch.Tensor | None = None,
                gold_margin: float = 0.0, gold_weight: float = 1.0) -> torch.Tensor:
    """SimCLS's ranking margin loss for one input's candidates.

    Sort the candidates by ``quality``, best first; then

        loss = Σ_{i<j} max(0, cos_j - cos_i + (j - i)·margin)

    a better candidate must outscore a worse one by a margin that grows with their rank distance.
    Pairs of equal quality carry no order and are left out. (SimCLS's code averages the pairs of
    each rank distance before summing; LLM-Blender's reimplementation sums the pairs, as here, with
    margin 1/N.) With ``gold_cos`` (the reference's cosine to the source), plus
    gold_weight · mean_i max(0, cos_i - gold_cos + gold_margin): the reference should outscore
    every candidate."""
    order = torch.argsort(-quality, stable=True)
    c, q = cos[order], quality[order]
    n = len(c)
    i, j = torch.triu_indices(n, n, offset=1, device=c.device)
    keep = q[i] > q[j]
    total = torch.clamp(c[j] - c[i] + (j - i).to(c.dtype) * margin, min=0)[keep].sum()
    if gold_cos is not None and gold_weight:
        total = total + gold_weight * torch.clamp(cos - gold_cos + gold_margin, min=0).mean()
    return total


@dataclass
class _SimCLSItem:
    source: tuple[int, ...]
    candidates: list[tuple[int, ...]]
    quality: np.ndarray
    gold: tuple[int, ...] | None


class SimCLSModel(EncoderModel):
    """SimCLS-style dual encoder: one backbone embeds the source and each candidate apart, score =
    cos(source, candidate); trained with :func:`simcls_loss`, candidates ordered by
    :func:`blender_lib.examples.metric_quality` over ``config.metrics``.

    Differences from SimCLS / LLM-Blender's DualReranker, by design: mean pooling by default
    (``pooling="cls"`` gives their first-token vector; MiniLM was trained for mean pooling), and the
    candidate order comes from the mean normalised metric rank, not the raw sum of metric scores
    (in which BLEU's 0-100 scale would outweigh BERTScore's 0-1)."""

    KIND = "simcls"
    CONFIG = SimCLSConfig
    WHAT = "baseline model"

    def _frame(self, ids: Sequence[int]) -> tuple[int, ...]:
        return (*self.prefix, *ids, *self.suffix)

    def make_item(self, item: TrainingInput) -> _SimCLSItem:
        cfg = self.config
        gold = self._frame(self.tokens(item.reference, cfg.candidate_max_length)) if item.reference else None
        return _SimCLSItem(self._frame(self.tokens(item.source, cfg.source_max_length)),
                           [self._frame(self.tokens(t, cfg.candidate_max_length)) for t in item.texts],
                           quality_from_table(item.scores), gold)

    def collate(self, items: list[tuple[_SimCLSItem, list[int]]]) -> dict[str, torch.Tensor]:
        """Sources, the chosen candidates (sorted by length, with their input and quality) and the
        references, each padded apart."""
        cands = sorted(((b, k) for b, (it, chosen) in enumerate(items) for k in chosen),
                       key=lambda bk: len(items[bk[0]][0].candidates[bk[1]]))
        src = self.pad([it.source for it, _ in items])
        cand = self.pad([items[b][0].candidates[k] for b, k in cands])
        batch = {"src_ids": src["input_ids"], "src_mask": src["attention_mask"],
                 "cand_ids": cand["input_ids"], "cand_mask": cand["attention_mask"],
                 "cand_owner": torch.tensor([b for b, _ in cands]),
                 "quality": torch.tensor([items[b][0].quality[k] for b, k in cands], dtype=torch.float)}
        golds = sorted(((b, it.gold) for b, (it, _) in enumerate(items) if it.gold is not None),
                       key=lambda g: len(g[1]))
        if golds and self.config.gold_weight:
            gold = self.pad([g for _, g in golds])
            batch.update(gold_ids=gold["input_ids"], gold_mask=gold["attention_mask"],
                         gold_owner=torch.tensor([b for b, _ in golds]))
        return batch

    def forward(self, src_ids: torch.Tensor, src_mask: torch.Tensor, cand_ids: torch.Tensor, cand_mask: torch.Tensor,
                cand_owner: torch.Tensor, quality: torch.Tensor, gold_ids: torch.Tensor | None = None,
                gold_mask: torch.Tensor | None = None, gold_owner: torch.Tensor | None = None) -> torch.Tensor:
        """The mean SimCLS loss over the batch's inputs."""
        src = self.pooled(src_ids, src_mask)
        cos = F.cosine_similarity(self.pooled(cand_ids, cand_mask), src[cand_owner], dim=-1)
        gold_cos = None
        if gold_ids is not None:
            gold_cos = torch.full((len(src),), float("nan"), device=cos.device)
            gold_cos[gold_owner] = F.cosine_similarity(self.pooled(gold_ids, gold_mask), src[gold_owner], dim=-1)
        losses = []
        for b in range(len(src)):
            sel = cand_owner == b
            g = gold_cos[b] if gold_cos is not None and not torch.isnan(gold_cos[b]) else None
            losses.append(simcls_loss(cos[sel], quality[sel], self.config.margin, gold_cos=g,
                                      gold_margin=self.config.gold_margin, gold_weight=self.config.gold_weight))
        return torch.stack(losses).mean()

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], budget: int, *, batch_size: int | None = None,
              progress: bool = False) -> torch.Tensor:
        """Mean-pooled embeddings (unnormalised, fp32), length-sorted batches."""
        framed = [self._frame(self.tokens(t, budget)) for t in texts]
        out = torch.zeros((len(texts), self.encoder.config.hidden_size))
        for idx in self.eval_batches([len(f) for f in framed], batch_size, "SimCLS", progress):
            batch = {k: v.to(self.device) for k, v in self.pad([framed[k] for k in idx]).items()}
            out[idx] = self.pooled(batch["input_ids"], batch["attention_mask"]).cpu()
        return out

    def score(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              batch_size: int | None = None, progress: bool = False) -> Scores:
        check_text_inputs(sources, candidate_lists)
        cfg = self.config
        src_texts = list(dict.fromkeys(sources))
        cand_texts = list(dict.fromkeys(t for cands in candidate_lists for t in cands))
        src = dict(zip(src_texts, self.embed(src_texts, cfg.source_max_length, batch_size=batch_size)))
        cand = dict(zip(cand_texts, self.embed(cand_texts, cfg.candidate_max_length, batch_size=batch_size,
                                               progress=progress)))
        return [F.cosine_similarity(torch.stack([cand[t] for t in cands]), src[s][None], dim=-1).numpy().astype(float)
                for s, cands in zip(sources, candidate_lists)]


@dataclass
class _SummaItem:
    pairs: list[tuple[tuple[int, ...], tuple[int, ...]]]  # (ids, token types) per candidate
    labels: np.ndarray  # [N, n_metrics]: 1 where the candidate is (tied for) the best by that metric
    quality: np.ndarray  # [N]: which candidate sub-sampling keeps


def top_labels(table: np.ndarray) -> np.ndarray:
    """SummaReranker's targets: 1 where a candidate is the best (ties: all tied) by metric k, else 0."""
    table = np.asarray(table, dtype=float)
    return np.isclose(table, table.max(axis=0, keepdims=True), rtol=0, atol=1e-12).astype(float)


class SummaRerankerModel(EncoderModel):
    """SummaReranker-style cross-encoder: ``[CLS] source [SEP] candidate [SEP]``, pooled (mean by
    default, ``pooling="cls"`` as in the paper), a 2-layer head with one logit per metric, each trained
    with binary cross-entropy on "is this candidate the best by metric k" (:func:`top_labels`);
    score = σ(mean over metrics of the logits), as in LLM-Blender's reimplementation.

    Not reproduced: SummaReranker's mixture-of-experts layer and its auxiliary load-balancing loss
    (one shared head here). Candidate sub-sampling is ``config.train_candidates``."""

    KIND = "summareranker"
    CONFIG = SummaRerankerConfig
    WHAT = "baseline model"

    def __init__(self, encoder: nn.Module, tokenizer: Any, config: RerankerConfig) -> None:
        super().__init__(encoder, tokenizer, config)
        hidden = encoder.config.hidden_size
        drop = config.head_dropout  # type: ignore[attr-defined]
        self.head = nn.Sequential(nn.Dropout(drop), nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(drop),
                                  nn.Linear(hidden, len(config.metrics)))

    def encode_pair(self, source: str, candidate: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        cfg = self.config
        first = (*self.prefix, *self.tokens(source, cfg.source_max_length), *self.suffix)
        second = (*self.tokens(candidate, cfg.candidate_max_length), *self.suffix)
        return (*first, *second), (0,) * len(first) + (1,) * len(second)

    def make_item(self, item: TrainingInput) -> _SummaItem:
        return _SummaItem([self.encode_pair(item.source, t) for t in item.texts], top_labels(item.scores),
                          quality_from_table(item.scores))

    def collate(self, items: list[tuple[_SummaItem, list[int]]]) -> dict[str, torch.Tensor]:
        """The chosen (source, candidate) pairs, sorted by length, with their labels (computed over
        all the input's candidates, so sub-sampling never makes a non-best candidate a positive)."""
        chosen = sorted(((it, k) for it, ks in items for k in ks), key=lambda ik: len(ik[0].pairs[ik[1]][0]))
        batch = self.pad([it.pairs[k][0] for it, k in chosen], [it.pairs[k][1] for it, k in chosen])
        batch["labels"] = torch.tensor(np.stack([it.labels[k] for it, k in chosen]), dtype=torch.float)
        return batch

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.pooled(input_ids, attention_mask, token_type_ids)).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Mean binary cross-entropy over (candidate, metric)."""
        return F.binary_cross_entropy_with_logits(self.logits(input_ids, attention_mask, token_type_ids), labels)

    @torch.inference_mode()
    def score(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              batch_size: int | None = None, progress: bool = False) -> Scores:
        check_text_inputs(sources, candidate_lists)
        pairs = [(s, c) for s, cands in zip(sources, candidate_lists) for c in cands]
        unique = list(dict.fromkeys(pairs))
        encoded = [self.encode_pair(s, c) for s, c in unique]
        values = np.zeros(len(unique))
        for idx in self.eval_batches([len(e[0]) for e in encoded], batch_size, "SummaReranker", progress):
            batch = self.pad([encoded[k][0] for k in idx], [encoded[k][1] for k in idx])
            logits = self.logits(**{k: v.to(self.device) for k, v in batch.items()})
            values[idx] = torch.sigmoid(logits.mean(-1)).cpu().numpy()
        lookup = dict(zip(unique, values))
        return _split(np.array([lookup[p] for p in pairs]), candidate_lists)


class _TrainedScorer(TextScorer):
    MODEL: ClassVar[type[SimCLSModel] | type[SummaRerankerModel]]
    NAME: ClassVar[str]

    def __init__(self, model: EncoderModel | str | Path, *, batch_size: int | None = None,
                 device: str | torch.device = "auto") -> None:
        self.model = model if isinstance(model, self.MODEL) else self.MODEL.from_pretrained(model, device=device)
        self.batch_size = batch_size
        self.label = f"{self.NAME} ({Path(self.model.config.backbone).name})"

    def score(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]], *,
              progress: bool = False) -> Scores:
        return self.model.score(sources, candidate_lists, batch_size=self.batch_size, progress=progress)


class SimCLSScorer(_TrainedScorer):
    """Scores = cos(source, candidate) of a trained :class:`SimCLSModel` (or a folder holding one)."""

    MODEL = SimCLSModel
    NAME = "SimCLS-style"


class SummaRerankerScorer(_TrainedScorer):
    """Scores = σ(mean logit) of a trained :class:`SummaRerankerModel` (or a folder holding one)."""

    MODEL = SummaRerankerModel
    NAME = "SummaReranker-style"



# --------------------------------------------------------------------------------------------
# training: the rerankers' recipe for blender_lib.training


def sub_sample(quality: np.ndarray, k: int | None, rng: np.random.Generator) -> list[int]:
    """LLM-Blender's "top_random" sub-sampling: the best candidate (first of equals) and k - 1 others
    drawn at random, in index order; all of them when k is None or N <= k."""
    n = len(quality)
    if k is None or n <= k:
        return list(range(n))
    top = int(np.argmax(quality))
    others = rng.choice([i for i in range(n) if i != top], size=k - 1, replace=False)
    return sorted([top, *others.tolist()])


@dataclass
class RerankerRecipe:
    """SimCLS or SummaReranker for :func:`blender_lib.training.train`: every input with its best
    candidate and ``train_candidates - 1`` random others per epoch, the model's own loss, the best
    epoch by the lowest mean metric rank of the validation top-1 (ties keep the earlier one)."""

    model_class: type[SimCLSModel] | type[SummaRerankerModel]
    config: RerankerConfig
    inputs: list[TrainingInput]
    val_examples: Sequence[Mapping[str, Any]]
    data_key: str
    skipped_examples: int
    weights_folder: str = "model"

    @property
    def kind(self) -> str:
        return self.config.KIND

    @property
    def items_per_epoch(self) -> int:
        return len(self.inputs)

    def build_model(self) -> EncoderModel:
        return self.model_class.from_backbone(self.config)

    def training_data(self, model: SimCLSModel | SummaRerankerModel) -> Shuffled:
        k = self.config.train_candidates
        return Shuffled([model.make_item(i) for i in self.inputs], self.config.seed,
                        pick=lambda item, rng: sub_sample(item.quality, k, rng))

    def collate(self, model: EncoderModel) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
        return model.collate

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch)

    def validate(self, model: EncoderModel) -> dict[str, float]:
        if not self.val_examples:
            return {}
        sources, candidate_lists = check_examples(self.val_examples)
        return evaluate_selection(self.val_examples, model.score(sources, candidate_lists), self.config.metrics)

    def better(self, val: Mapping[str, float], best: Mapping[str, float]) -> bool:
        return improves(val, best, "top1_mean_metric_rank", higher_is_better=False)

    def shown(self, val: Mapping[str, float]) -> dict[str, float]:
        return {k: round(v, 4) for k, v in val.items() if k.startswith("top1_")}


def _reranker_recipe(model_class: type[SimCLSModel] | type[SummaRerankerModel],
                     train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                     config: RerankerConfig) -> RerankerRecipe:
    if not isinstance(config, model_class.CONFIG):
        raise TypeError(f"{model_class.KIND} training needs a {model_class.CONFIG.__name__}, got {type(config).__name__}")
    inputs, skipped = training_inputs(train_examples, config.metrics, what="baseline training")
    if val_examples:
        check_examples(val_examples)
        for ex in val_examples:  # a missing score fails now, not after an epoch of training
            score_table(ex, config.metrics)
    return RerankerRecipe(model_class, config, inputs, val_examples, _run_key(train_examples, val_examples),
                          skipped)  # validation picks the best epoch: part of the run's key


def train_simcls(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                 config: SimCLSConfig, out_dir: str | Path, *, progress: bool = True,
                 resume: bool = True) -> TrainReport:
    """Train a SimCLS-style dual encoder; the best epoch on validation (lowest mean metric rank of
    the top-1) lands in out_dir/best. Calling again resumes after the last completed epoch (or trains
    on when ``epochs`` grew); without validation examples the last epoch is the best."""
    return train(_reranker_recipe(SimCLSModel, train_examples, val_examples, config), out_dir, progress=progress,
                 resume=resume)


def train_summareranker(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                        config: SummaRerankerConfig, out_dir: str | Path, *, progress: bool = True,
                        resume: bool = True) -> TrainReport:
    """Train a SummaReranker-style cross-encoder; same conventions as :func:`train_simcls`."""
    return train(_reranker_recipe(SummaRerankerModel, train_examples, val_examples, config), out_dir,
                 progress=progress, resume=resume)


def train_or_load(train_examples: Sequence[Mapping[str, Any]], val_examples: Sequence[Mapping[str, Any]],
                  config: SimCLSConfig | SummaRerankerConfig, *,
                  progress: bool = True) -> tuple[SimCLSScorer | SummaRerankerScorer, TrainReport]:
    """The scorer of the best epoch of this config's run on this data, trained (or resumed) first in
    its cache folder (:func:`cache_folder`, keyed by the config and both splits) when unfinished."""
    trained = {SimCLSConfig: (SimCLSModel, SimCLSScorer), SummaRerankerConfig: (SummaRerankerModel, SummaRerankerScorer)}
    if type(config) not in trained:
        raise TypeError(f"train_or_load needs a SimCLSConfig or a SummaRerankerConfig, got {type(config).__name__}")
    model_class, scorer_class = trained[type(config)]
    recipe = _reranker_recipe(model_class, train_examples, val_examples, config)
    report = train(recipe, _folder(config, recipe.data_key), progress=progress)
    return scorer_class(report.best_dir, device=config.device), report


def reward_scorer(model: str, **kwargs: Any) -> TextScorer:
    """The pointwise reward a name asks for: a causal LM becomes the log-likelihood stand-in
    (:class:`LMRewardScorer`, offline), anything else a one-logit reward model
    (:class:`RewardModelScorer`, e.g. OpenAssistant's DeBERTa in the paper profile)."""
    path, kind = resolve_model_path(model)
    if kind == "auto":
        from transformers import AutoConfig

        try:
            kind = infer_kind(AutoConfig.from_pretrained(path))
        except (OSError, ValueError) as err:
            raise ValueError(f"unknown reward model {model!r}: not a packaged offline model, a local folder or a "
                             f"reachable hub id ({type(err).__name__})") from err
    return LMRewardScorer(model, **kwargs) if kind == "causal" else RewardModelScorer(model, **kwargs)