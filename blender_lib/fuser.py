"""GenFuser (LLM-Blender, Section 3.3): fuse the top-K ranked candidates into one better answer.

A generator reads the instruction and the top-K candidates and writes one answer; ``blend`` is
PairRanker top-K -> GenFuser in one call.

Two model families share one code path: seq2seq (Flan-T5 in the ``paper`` profile, the paper's own
input format with ``</s>`` separators) and decoder-only (SmolLM2-135M-Instruct offline: the same
fields in the model's chat template, the target after it, the loss on the target tokens only).
Training runs through the Hugging Face ``Trainer`` (bf16, gradient accumulation, gradient
checkpointing, DeepSpeed through ``accelerate``), with early stopping on validation loss; a kill
resumes from the last complete checkpoint, and the best model is published whole (LoRA adapters
merged) into ``<run>/best``. The rankers and the router share :mod:`blender_lib.training`; the fuser
keeps the ``Trainer`` on purpose: a generative LM needs its causal/seq2seq collators, generation-time
evaluation, LoRA merging and DeepSpeed, which transformers already does and that loop does not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .checks import check_field_types, check_training_settings, config_from_dict
from .io import JsonlCache, atomic_write_json
from .judge import JudgeStats, judge_examples
from .metrics import MetricSettings, score_with_cache
from .models import LoadedModel, accepts_logits_to_keep, freeze_lower_layers, has_chat_template, load_model, resolve_device
from .paths import cache_dir
from .persistence import existing_dir, replace_dir

FUSE_PROMPT = "Summarize candidates into a better one for the given instruction:"  # the official wording
META_FILE = "genfuser.json"
REPORT_FILE = "report.json"


class FuserError(ValueError):
    """Bad input to the fuser: named, never silently dropped."""


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class FuserConfig:
    """Everything that decides a trained GenFuser. Paper: Flan-T5-XL, K = 3, candidates cut at 128
    tokens, the whole input at 1024."""

    model: str = "smollm2-135m-instruct"  # a causal LM or a seq2seq model (flan-t5-*): any load_model name
    top_k: int = 3
    source_max_length: int = 256  # instruction + input, tokens
    candidate_max_length: int = 128  # each candidate, tokens ("..." marks a cut)
    target_max_length: int = 128  # the reference, tokens
    epochs: int = 3
    batch_size: int = 8
    grad_accum_steps: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    patience: int = 1  # early stopping: epochs without a lower validation loss
    freeze_layers: int = 0  # freeze the embeddings + this many bottom layers (a CPU budget; the paper: 0)
    lora_r: int = 0  # > 0: train LoRA adapters of this rank instead of all weights (large models)
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"  # peft target_modules: "all-linear", or comma-separated module names
    weights_dtype: str = "float32"  # the trained weights; "bfloat16" trains ~4x faster on CPU, at bf16's precision
    bf16: bool = True  # bf16 autocast (mixed precision) where the device supports it, for float32 weights
    gradient_checkpointing: bool = False  # trade compute for memory (large models on one GPU)
    deepspeed: str | None = None  # a DeepSpeed JSON config for multi-GPU (launch with `accelerate launch`)
    seed: int = 42
    device: str = "auto"

    def __post_init__(self) -> None:
        check_field_types(self)
        check_training_settings(self, ("top_k", "source_max_length", "candidate_max_length", "target_max_length",
                                       "epochs", "batch_size", "grad_accum_steps", "patience"))
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0, got {self.lora_r}")
        if self.lora_r and self.freeze_layers:
            raise ValueError("use lora_r or freeze_layers, not both: LoRA already freezes the base weights")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FuserConfig:
        return config_from_dict(cls, values, "GenFuser")

    def key(self) -> str:
        """A short hash of the fields that change the trained model (``epochs`` too: early stopping
        makes a longer run a different run)."""
        values = {k: v for k, v in asdict(self).items() if k not in ("device",)}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class FusionItem:
    """One fusion input: the instruction, its input, the candidates in the order shown, and the
    reference target (``None`` at test time)."""

    id: str
    instruction: str
    input: str
    candidates: tuple[str, ...]
    target: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise FuserError(f"fusion input {self.id!r} has an empty instruction")
        if not self.candidates:
            raise FuserError(f"fusion input {self.id!r} has no candidates")
        empty = [k for k, c in enumerate(self.candidates) if not isinstance(c, str) or not c.strip()]
        if empty:
            raise FuserError(f"fusion input {self.id!r}: candidate(s) {empty} are empty")
        if self.target is not None and (not isinstance(self.target, str) or not self.target.strip()):
            raise FuserError(f"fusion input {self.id!r} has an empty target (reference)")


def _texts(example: Mapping[str, Any]) -> list[str]:
    candidates = example.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise FuserError(f"example {example.get('id')!r} has no candidates to fuse")
    return [c.get("text") if isinstance(c, Mapping) else c for c in candidates]


def _item(example: Mapping[str, Any], chosen: Sequence[int], with_target: bool) -> FusionItem:
    texts = _texts(example)
    target = example.get("output") if with_target else None
    if with_target and not example.get("has_reference", True):
        raise FuserError(f"example {example.get('id')!r} has no reference: it cannot be a training target")
    return FusionItem(id=str(example.get("id")), instruction=example.get("instruction") or "",
                      input=example.get("input") or "", candidates=tuple(texts[i] for i in chosen), target=target)


def top_k_indices(scores: np.ndarray, k: int) -> list[int]:
    """The k best candidates, best first (ties: the earlier candidate)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or not len(scores):
        raise FuserError(f"ranking scores must be a non-empty 1-d array, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise FuserError("ranking scores contain NaN or infinity")
    if k < 1:
        raise FuserError(f"top-k: k must be >= 1, got {k}")
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def ranked_items(examples: Sequence[Mapping[str, Any]], scores: Sequence[np.ndarray], k: int, *,
                 with_target: bool = False, shuffle: bool = False, seed: int = 0) -> list[FusionItem]:
    """Fusion inputs from a ranking: each example's top-k by its scores, best first, or in a seeded
    random order (``shuffle``: the training inputs, so the fuser cannot learn to copy slot 1)."""
    if len(examples) != len(scores):
        raise FuserError(f"{len(examples)} examples but {len(scores)} score arrays")
    items = []
    for n, (ex, s) in enumerate(zip(examples, scores)):
        if len(s) != len(_texts(ex)):
            raise FuserError(f"example {ex.get('id')!r}: {len(s)} scores for {len(_texts(ex))} candidates")
        chosen = top_k_indices(s, k)
        if shuffle:
            chosen = [chosen[i] for i in np.random.default_rng([seed, n]).permutation(len(chosen))]
        items.append(_item(ex, chosen, with_target))
    return items


def random_items(examples: Sequence[Mapping[str, Any]], k: int, *, seed: int = 0,
                 with_target: bool = False) -> list[FusionItem]:
    """The random-K control: k candidates drawn at random (seeded per example), no ranker."""
    if k < 1:
        raise FuserError(f"random-k: k must be >= 1, got {k}")
    items = []
    for n, ex in enumerate(examples):
        n_candidates = len(_texts(ex))
        chosen = np.random.default_rng([seed, n]).permutation(n_candidates)[: min(k, n_candidates)]
        items.append(_item(ex, [int(i) for i in chosen], with_target))
    return items


def fusion_source(instruction: str, input_text: str, candidates: Sequence[str], *, seq2seq: bool) -> str:
    """The paper's fusion input. Seq2seq: the official ``</s>``-joined fields with ``<extra_id_i>``
    candidate markers; decoder-only: the same fields on their own lines (the chat template adds
    the model's own turn markers)."""
    if seq2seq:
        shown = "</s>".join(f"Candidate {i}: <extra_id_{i}>:" + c for i, c in enumerate(candidates))
        return "</s>".join([f"Instruction: {instruction}", f"Input: {input_text}", shown]) + "</s>" + FUSE_PROMPT
    lines = [f"Instruction: {instruction}"] + ([f"Input: {input_text}"] if input_text.strip() else [])
    lines += [f"Candidate {i + 1}: {c}" for i, c in enumerate(candidates)]
    return "\n".join(lines + [FUSE_PROMPT])


# --------------------------------------------------------------------------------------------
# the model


def _cut(tokenizer: Any, text: str, max_tokens: int, *, mark: bool) -> str:
    """The text cut at ``max_tokens`` tokens (with "..." when ``mark``, as the official code does)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens]) + ("..." if mark else "")


@dataclass
class Fused:
    """A fused answer and how many tokens the fuser generated for it."""

    text: str
    n_tokens: int


class GenFuser:
    """A loaded fuser (seq2seq or causal) with its config: ``prompt``, ``training_features`` and
    ``fuse``; ``save_pretrained`` / ``from_pretrained`` for a trained one."""

    def __init__(self, loaded: LoadedModel, config: FuserConfig) -> None:
        if loaded.kind not in ("causal", "seq2seq"):
            raise FuserError(f"a GenFuser needs a causal or seq2seq model, {loaded.name!r} is {loaded.kind!r}")
        self.loaded, self.config = loaded, config
        self.seq2seq = loaded.kind == "seq2seq"

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @classmethod
    def from_model(cls, config: FuserConfig, *, dtype: str | None = "auto") -> GenFuser:
        """An untrained fuser on ``config.model`` (the zero-shot control, and the start of training)."""
        return cls(load_model(config.model, device=config.device, dtype=dtype), config)

    def prompt(self, item: FusionItem) -> str:
        """The model input of one item, fields cut to the config's token budgets."""
        tok, cfg = self.tokenizer, self.config
        instruction = _cut(tok, item.instruction, cfg.source_max_length, mark=False)
        candidates = [_cut(tok, c, cfg.candidate_max_length, mark=True) for c in item.candidates]
        source = fusion_source(instruction, item.input, candidates, seq2seq=self.seq2seq)
        if self.seq2seq:
            return source
        if has_chat_template(self.loaded):
            return tok.apply_chat_template([{"role": "user", "content": source}], tokenize=False,
                                           add_generation_prompt=True)
        return source + "\nAnswer:"

    def _input_limit(self) -> int:
        cfg = self.config
        return cfg.source_max_length + cfg.top_k * (cfg.candidate_max_length + 16) + 64  # + field labels, template

    def training_features(self, item: FusionItem) -> dict[str, list[int]]:
        """Token ids of one training example: the loss falls on the target only."""
        if item.target is None:
            raise FuserError(f"fusion input {item.id!r} has no target to train on")
        tok = self.tokenizer
        source = tok.encode(self.prompt(item), add_special_tokens=self.seq2seq)[: self._input_limit()]
        target = tok.encode(item.target, add_special_tokens=False)[: self.config.target_max_length]
        target = target + [tok.eos_token_id]
        if self.seq2seq:
            return {"input_ids": source, "attention_mask": [1] * len(source), "labels": target}
        ids = source + target
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(source) + target}

    @torch.inference_mode()
    def fuse(self, items: Sequence[FusionItem], *, max_new_tokens: int = 128, num_beams: int = 1,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 16,
             seed: int = 0, progress: bool = False) -> list[Fused]:
        """Fused answers, batched by prompt length (beam search or sampling as asked)."""
        if max_new_tokens < 1 or num_beams < 1 or batch_size < 1:
            raise FuserError("max_new_tokens, num_beams and batch_size must be >= 1")
        tok, model = self.tokenizer, self.model
        prompts = [self.prompt(it) for it in items]
        order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
        out: list[Fused | None] = [None] * len(prompts)
        settings: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=do_sample,
                                        pad_token_id=tok.pad_token_id, use_cache=True)
        settings.update(dict(temperature=temperature, top_p=top_p) if do_sample else
                        dict(temperature=None, top_p=None, top_k=None))
        was_training = model.training
        model.eval()
        try:
            for start in tqdm(range(0, len(order), batch_size), desc="fusing", disable=not progress):
                idx = order[start : start + batch_size]
                batch = tok([prompts[k] for k in idx], return_tensors="pt", padding=True, truncation=True,
                            max_length=self._input_limit(), add_special_tokens=self.seq2seq,
                            return_token_type_ids=False).to(self.loaded.device)  # generate() refuses them
                torch.manual_seed(seed + start)
                generated = model.generate(**batch, **settings)
                new = generated if self.seq2seq else generated[:, batch["input_ids"].shape[1] :]
                for k, row in zip(idx, new):
                    text = tok.decode(row, skip_special_tokens=True).strip()
                    n = int(((row != tok.pad_token_id) & (row != tok.eos_token_id)).sum())
                    out[k] = Fused(text=text, n_tokens=n)
        finally:
            model.train(was_training)
        return out  # type: ignore[return-value]

    def save_pretrained(self, folder: str | Path) -> Path:
        """The model (LoRA merged), tokenizer and our config, written beside ``folder`` and swapped in."""
        target = Path(folder)
        staging = target.with_name(f".{target.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        model.config.use_cache = True  # the Trainer turns the KV cache off; generation needs it (~10x faster)
        model.save_pretrained(staging)
        self.tokenizer.save_pretrained(staging)
        atomic_write_json(staging / META_FILE, {"format": 1, "config": asdict(self.config), "kind": self.loaded.kind})
        replace_dir(staging, target)
        return target

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str = "auto", dtype: str | None = "auto") -> GenFuser:
        path = existing_dir(Path(folder), META_FILE, "GenFuser")
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        config = FuserConfig.from_dict({**meta["config"], "device": device})
        loaded = load_model(str(path), kind=meta["kind"], device=device, dtype=dtype)
        return cls(loaded, config)


# --------------------------------------------------------------------------------------------
# training


@dataclass
class FuserTrainReport:
    out_dir: str
    best_dir: str
    best_epoch: int
    epochs_completed: int
    stopped_early: bool
    resumed_from_step: int  # optimizer steps already done when this call started (0 = fresh)
    train_loss: list[float]  # per epoch
    val_loss: list[float]  # per epoch
    train_examples: int
    val_examples: int
    trainable_parameters: int
    train_seconds: float  # the training of this call only (0 for a finished run loaded from disk)
    train_tokens_per_second: float
    config: dict[str, Any] = field(default_factory=dict)


class _Features(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, list[int]]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, k: int) -> dict[str, list[int]]:
        return self.features[k]


def _data_key(train_items: Sequence[FusionItem], val_items: Sequence[FusionItem]) -> str:
    payload = [[asdict(i) for i in train_items], [asdict(i) for i in val_items]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def run_dir(train_items: Sequence[FusionItem], val_items: Sequence[FusionItem], config: FuserConfig,
            root: str | Path | None = None) -> Path:
    """Where a training run with this config and data lives: <root>/<config key>-<data key>
    (default root: ``$BLENDER_BOOK_CACHE/genfuser``)."""
    base = Path(root) if root is not None else cache_dir() / "genfuser"
    return base / f"{config.key()}-{_data_key(train_items, val_items)}"


def _complete_checkpoint(out_dir: Path) -> Path | None:
    """The newest checkpoint the Trainer finished writing (its trainer_state.json is written last);
    a half-written one, left by a kill, is removed so nothing ever resumes from it."""
    complete = None
    for folder in sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        if (folder / "trainer_state.json").exists():
            complete = folder
        else:
            shutil.rmtree(folder)
    return complete


def _prepare_model(fuser: GenFuser, config: FuserConfig) -> int:
    """Freeze layers or wrap in LoRA as configured; returns the number of trainable parameters."""
    model = fuser.model
    if config.lora_r:
        from peft import LoraConfig, TaskType, get_peft_model

        task = TaskType.SEQ_2_SEQ_LM if fuser.seq2seq else TaskType.CAUSAL_LM
        fuser.loaded.model = get_peft_model(model, LoraConfig(task_type=task, r=config.lora_r,
                                                              lora_alpha=config.lora_alpha,
                                                              lora_dropout=config.lora_dropout,
                                                              target_modules=_lora_targets(config.lora_targets)))
        model = fuser.loaded.model
    elif config.freeze_layers:
        freeze_lower_layers(model, config.freeze_layers)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _lora_targets(spec: str) -> str | list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("lora_targets must name modules, or be 'all-linear'")
    return spec if spec == "all-linear" else names


def _training_arguments(config: FuserConfig, out_dir: Path, progress: bool) -> Any:
    from transformers import TrainingArguments

    device = resolve_device(config.device)
    bf16 = config.bf16 and config.weights_dtype == "float32" and (device.type == "cpu" or torch.cuda.is_bf16_supported())
    return TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum_steps,
        learning_rate=config.lr, weight_decay=config.weight_decay, warmup_steps=float(config.warmup_ratio),
        max_grad_norm=config.max_grad_norm, bf16=bf16, use_cpu=device.type == "cpu", seed=config.seed,
        data_seed=config.seed, eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        save_total_limit=2, report_to="none", prediction_loss_only=True,  # keep no [batch, seq, vocab] logits
        disable_tqdm=not progress, dataloader_num_workers=0,
        deepspeed=config.deepspeed, gradient_checkpointing=False,  # enabled on the model itself
    )


def _epoch_losses(log_history: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    train = [row["loss"] for row in log_history if "loss" in row and "epoch" in row]
    val = [row["eval_loss"] for row in log_history if "eval_loss" in row]
    return train, val


def _keeps_logits(fuser: GenFuser) -> bool:
    """A causal LM whose forward can compute the vocabulary logits for the last positions only."""
    if fuser.seq2seq:
        return False
    return accepts_logits_to_keep(fuser.model)


def _target_logits_trainer() -> type:
    from transformers import Trainer

    class TargetLogitsTrainer(Trainer):
        """The causal loss from logits of the target positions only. The prompt is 3-4x longer than
        the target and its logits carry no loss, so skipping them saves most of the LM head's work
        (a 49k-token vocabulary for SmolLM2) and its float32 loss memory."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            labels = inputs.pop("labels")
            has_target = labels != -100
            first = torch.where(has_target.any(1), has_target.int().argmax(1), labels.shape[1]).min()
            keep = int(labels.shape[1] - first + 1)  # from the token before the first target on
            outputs = model(**inputs, logits_to_keep=keep)
            logits = outputs.logits[:, :-1].float()  # position t predicts token t + 1
            targets = labels[:, labels.shape[1] - keep + 1 :]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            count = num_items_in_batch if num_items_in_batch is not None else has_target.sum()
            loss = loss / count
            return (loss, outputs) if return_outputs else loss

    return TargetLogitsTrainer


def train_fuser(train_items: Sequence[FusionItem], val_items: Sequence[FusionItem], config: FuserConfig,
                out_dir: str | Path, *, progress: bool = True) -> FuserTrainReport:
    """Fine-tune a GenFuser on (fusion input -> reference); the epoch with the lowest validation loss
    lands in ``out_dir/best``. A finished run is loaded, not retrained; a killed one resumes from
    its last complete checkpoint."""
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Trainer

    out_dir = Path(out_dir)
    report_path = out_dir / REPORT_FILE
    if report_path.exists() and (out_dir / "best" / META_FILE).exists():
        stored = json.loads(report_path.read_text(encoding="utf-8"))
        if {**stored["config"], "device": config.device} != json.loads(json.dumps(asdict(config))):  # as key()
            raise FuserError(f"{out_dir} holds a finished GenFuser run with other settings; train in another folder "
                             "(train_or_load keys its folder by the config and the data)")
        return FuserTrainReport(**{**stored, "train_seconds": 0.0})
    if not train_items or not val_items:
        raise FuserError(f"GenFuser training needs training and validation inputs, got {len(train_items)} and "
                         f"{len(val_items)} (validation loss picks the epoch and stops early)")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    fuser = GenFuser.from_model(config, dtype=config.weights_dtype)
    trainable = _prepare_model(fuser, config)
    train_features = [fuser.training_features(i) for i in train_items]
    val_features = [fuser.training_features(i) for i in val_items]
    resume = _complete_checkpoint(out_dir)
    trainer_cls = _target_logits_trainer() if _keeps_logits(fuser) else Trainer
    trainer = trainer_cls(
        model=fuser.model, args=_training_arguments(config, out_dir, progress),
        train_dataset=_Features(train_features), eval_dataset=_Features(val_features),
        data_collator=DataCollatorForSeq2Seq(fuser.tokenizer, label_pad_token_id=-100, padding=True),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=config.patience)],
    )
    if not progress:  # with tqdm off the Trainer prints every log dict (timings included): keep quiet
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    resumed_step = json.loads((resume / "trainer_state.json").read_text())["global_step"] if resume else 0
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - start
    fuser.loaded.model = trainer.model  # the best epoch (load_best_model_at_end)
    fuser.save_pretrained(out_dir / "best")
    state = trainer.state
    train_loss, val_loss = _epoch_losses(state.log_history)
    best_epoch = int(np.argmin(val_loss)) + 1 if val_loss else 0
    tokens = sum(len(f["input_ids"]) for f in train_features) * config.epochs * (state.global_step - resumed_step) \
        / max(state.max_steps, 1)  # this call's steps only (a resumed run did the others before)
    report = FuserTrainReport(
        out_dir=str(out_dir), best_dir=str(out_dir / "best"), best_epoch=best_epoch, epochs_completed=len(val_loss),
        stopped_early=len(val_loss) < config.epochs, resumed_from_step=resumed_step, train_loss=train_loss,
        val_loss=val_loss, train_examples=len(train_items), val_examples=len(val_items),
        trainable_parameters=trainable, train_seconds=seconds,
        train_tokens_per_second=tokens / seconds if seconds > 0 else 0.0, config=asdict(config))
    for checkpoint in out_dir.glob("checkpoint-*"):  # the run is published: its checkpoints are dead weight
        shutil.rmtree(checkpoint)
    atomic_write_json(report_path, asdict(report))
    return report


def train_or_load(train_items: Sequence[FusionItem], val_items: Sequence[FusionItem], config: FuserConfig, *,
                  root: str | Path | None = None, progress: bool = True,
                  dtype: str | None = "auto") -> tuple[GenFuser, FuserTrainReport]:
    """The best checkpoint of a finished run with this config and data; trains (or resumes) first."""
    report = train_fuser(train_items, val_items, config, run_dir(train_items, val_items, config, root),
                         progress=progress)
    return GenFuser.from_pretrained(report.best_dir, device=config.device, dtype=dtype), report


# --------------------------------------------------------------------------------------------
# LLM-Blender end to end, and the fused answer as one more candidate


@dataclass
class Blended:
    text: str
    n_tokens: int
    chosen: list[int]  # the candidates fused, best first (indices into the input list)


def blend(ranker: Any, fuser: GenFuser, instruction: str, candidates: Sequence[str], *, input_text: str = "",
          top_k: int | None = None, **generation: Any) -> Blended:
    """LLM-Blender on one input: PairRanker ranks all candidates (max-logits over the full
    comparison matrix), GenFuser fuses the top-K into one answer."""
    from .examples import source_text
    from .rankers import comparison_matrix, max_logits

    if len(candidates) < 1:
        raise FuserError("blend needs at least one candidate")
    k = fuser.config.top_k if top_k is None else top_k
    example = {"id": "blend", "instruction": instruction, "input": input_text,
               "candidates": [{"text": c} for c in candidates]}
    scores = max_logits(comparison_matrix(ranker, source_text(example), list(candidates))) \
        if len(candidates) > 1 else np.zeros(1)
    chosen = top_k_indices(scores, k)
    fused = fuser.fuse([_item(example, chosen, with_target=False)], **generation)[0]
    return Blended(text=fused.text, n_tokens=fused.n_tokens, chosen=chosen)


def with_added_candidate(examples: Sequence[Mapping[str, Any]], texts: Sequence[str], model: str, *,
                         decoding_method: str = "fusion") -> list[dict]:
    """Copies of the examples with one more candidate (a fused answer, as the paper scores it),
    its scores still to be computed. An empty fused text is an error, not a silent skip."""
    if len(examples) != len(texts):
        raise FuserError(f"{len(examples)} examples but {len(texts)} added texts")
    out = []
    for ex, text in zip(examples, texts):
        if any(c.get("model") == model for c in ex["candidates"]):
            raise FuserError(f"example {ex.get('id')!r} already has a candidate named {model!r}")
        if not isinstance(text, str) or not text.strip():
            raise FuserError(f"the added candidate {model!r} of example {ex.get('id')!r} is empty")
        copy_ = copy.deepcopy(dict(ex))
        copy_["candidates"].append({"model": model, "decoding_method": decoding_method, "text": text, "scores": {}})
        out.append(copy_)
    return out


def fuse_with_cache(fuser: GenFuser, items: Sequence[FusionItem], cache: JsonlCache, fuser_id: str,
                    **generation: Any) -> list[Fused]:
    """:meth:`GenFuser.fuse`, with every answer kept in an append-only cache keyed by the fuser, the
    prompt and the generation settings: a rerun or an interrupted run fuses only what is missing."""
    settings = json.dumps(generation, sort_keys=True)
    keys = [hashlib.sha256(json.dumps([fuser_id, fuser.prompt(it), settings]).encode()).hexdigest() for it in items]
    missing = [k for k, key in enumerate(keys) if cache.get(key) is None]
    if missing:
        fused = fuser.fuse([items[k] for k in missing], **generation)
        cache.add_batch([{"key": keys[k], "text": f.text, "n_tokens": f.n_tokens} for k, f in zip(missing, fused)])
    return [Fused(text=cache.get(key)["text"], n_tokens=cache.get(key)["n_tokens"]) for key in keys]  # type: ignore[index]


def score_added_candidate(examples: Sequence[dict], model: str, settings: MetricSettings, cache: JsonlCache) -> None:
    """Score the added candidate ``model`` of each example with the build's own reference metrics
    (same scorers, same cache scheme as the candidates were scored with), in place."""
    only_added = [{**ex, "candidates": [_added(ex, model)]} for ex in examples]
    score_with_cache(only_added, settings, cache)


def released_fuser_examples(model: str, items: Sequence[FusionItem], examples: Sequence[Mapping[str, Any]],
                            settings: MetricSettings, *, config: FuserConfig, fused_cache: JsonlCache, score_cache: JsonlCache,
                            name: str = "genfuser", dtype: str | None = "auto", **generation: Any) -> list[dict]:
    """A released fuser (the paper's ``llm-blender/gen_fuser_3b``), not trained here, on the same fusion
    inputs as ours (``config``'s budgets): copies of ``examples`` with its answer added as candidate
    ``name``, scored with the build's own metrics. Answers and scores are cached like ours."""
    fuser = GenFuser.from_model(replace(config, model=model), dtype=dtype)
    outputs = fuse_with_cache(fuser, items, fused_cache, f"released:{model}", **generation)
    augmented = with_added_candidate(examples, [f.text for f in outputs], name)
    score_added_candidate(augmented, name, settings, score_cache)
    return augmented


def judge_added_candidate(examples: Sequence[dict], model: str, judge: Any, cache: JsonlCache, *,
                          progress: bool = False) -> JudgeStats:
    """Judge the added candidate against every other candidate of its example (both orders, the
    build's judge) and merge the verdicts into ``cmp_results``, in place: GPT-Rank over N + 1."""
    pairs = []
    for ex in examples:
        added = _added(ex, model)
        pairs += [{"id": ex["id"], "instruction": ex["instruction"], "input": ex.get("input", ""),
                   "candidates": [c, added]} for c in ex["candidates"] if c is not added]
    stats = judge_examples(pairs, judge, cache, progress=progress)
    by_id = {ex["id"]: ex for ex in examples}
    for pair in pairs:
        by_id[pair["id"]].setdefault("cmp_results", {}).update(pair["cmp_results"])
    return stats


def _added(example: Mapping[str, Any], model: str) -> dict:
    found = [c for c in example["candidates"] if c.get("model") == model]
    if len(found) != 1:
        raise FuserError(f"example {example.get('id')!r} has {len(found)} candidates named {model!r}, expected 1")
    return found[0]


def beats_share(examples: Sequence[Mapping[str, Any]], index: int, other: Sequence[int], metric: str) -> float:
    """Share of examples where candidate ``index`` (the fused answer) scores strictly higher by
    ``metric`` than the candidate ``other[n]`` chosen by another method."""
    if len(other) != len(examples):
        raise FuserError(f"{len(other)} choices for {len(examples)} examples")
    wins = [ex["candidates"][index]["scores"][metric] > ex["candidates"][k]["scores"][metric]
            for ex, k in zip(examples, other)]
    return float(np.mean(wins)) if wins else float("nan")


def copy_overlap(texts: Sequence[str], items: Sequence[FusionItem]) -> np.ndarray:
    """For each fused text, its highest ROUGE-L F1 against the candidates it was shown: near 1 means
    the fuser copied one input rather than combining them."""
    from .metrics import rouge

    if len(texts) != len(items):
        raise FuserError(f"{len(texts)} fused texts for {len(items)} inputs")
    hyps = [t for t, it in zip(texts, items) for _ in it.candidates]
    refs = [c for it in items for c in it.candidates]
    scores = iter(row["rougeL"] for row in rouge(hyps, refs, ["rougeL"]))
    return np.array([max(next(scores) for _ in it.candidates) for it in items])
