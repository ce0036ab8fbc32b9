"""One training loop for every fine-tuned selector: PairRanker, SimCLS, SummaReranker, the ZOOTER router.

A method hands :func:`train` a :class:`Recipe`: how to build its model, its training data for an
epoch, how to collate a batch, the loss, the validation figures and which of two is better. The
loop is the same for all of them:

- ``accelerate`` (one process or ``accelerate launch``), AdamW (no decay on biases and norms), a
  linear warmup/decay schedule, gradient accumulation and clipping, optional bf16 autocast;
- seeds everywhere: the epoch's data is drawn from (seed, epoch) and dropout from seed + epoch,
  so a run resumed after epoch K trains exactly what an uninterrupted one would;
- one checkpoint per epoch (``epoch-K/`` = the loadable model + optimizer/scheduler/RNG state),
  written beside and renamed into place, then ``state.json`` written atomically: a run killed at
  any moment leaves a usable folder, and calling again resumes after the last completed epoch
  (or trains on when ``epochs`` grew, with the learning rate of the new schedule);
- the best epoch on validation is published to ``out_dir/best``.

The fuser is not trained here: it is a generative LM, for which transformers' ``Trainer``
already does all of this (:mod:`blender_lib.fuser`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .io import atomic_write_json
from .models import resolve_device
from .persistence import publish_best

STATE_FILE = "state.json"


class TrainingConfig(Protocol):
    """The fields the loop reads (every method's config dataclass has them)."""

    seed: int
    epochs: int
    batch_size: int
    grad_accum_steps: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    bf16: bool
    device: str

    def key(self, *, ignore: Sequence[str] = ()) -> str: ...


class EpochData(Protocol):
    """A map-style dataset whose items are drawn again for every epoch, from (seed, epoch)."""

    def resample(self, epoch: int) -> None: ...

    def __len__(self) -> int: ...

    def __getitem__(self, k: int) -> Any: ...


class Recipe(Protocol):
    """What a method tells the loop. ``kind`` names the run (state.json, messages),
    ``weights_folder`` the model's folder inside a checkpoint, ``data_key`` the training (and
    validation) data, so a folder never resumes a run on other data."""

    kind: str
    weights_folder: str
    config: TrainingConfig
    data_key: str
    skipped_examples: int
    items_per_epoch: int  # pairs (PairRanker) or inputs (the others): known before a model is built

    def build_model(self) -> nn.Module: ...

    def training_data(self, model: nn.Module) -> EpochData: ...

    def collate(self, model: nn.Module) -> Callable[[list[Any]], dict[str, torch.Tensor]]: ...

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def validate(self, model: nn.Module) -> dict[str, float]: ...

    def better(self, val: Mapping[str, float], best: Mapping[str, float]) -> bool: ...

    def shown(self, val: Mapping[str, float]) -> dict[str, float]: ...


@dataclass
class TrainReport:
    """What one call of :func:`train` did, and where the run's best model is."""

    kind: str
    out_dir: str
    best_dir: str
    best_epoch: int
    epochs_completed: int
    resumed_from_epoch: int  # epochs already done when this call started (0 = fresh)
    train_loss: list[float]  # mean loss per epoch, all epochs of the run
    val: list[dict[str, float]]  # validation figures per epoch (empty dicts without validation data)
    seconds: float  # this call, all included
    train_seconds: float  # training epochs of this call only
    items_per_epoch: int  # training items of an epoch: pairs (PairRanker), inputs (the others)
    items_trained: int  # items trained on in this call
    skipped_examples: int
    config: dict[str, Any] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)  # training time of every epoch of the run

    # PairRanker's items are pairs, the others' inputs: the names the chapters print
    @property
    def train_pairs(self) -> int:
        return self.items_trained

    @property
    def pairs_per_epoch(self) -> int:
        return self.items_per_epoch

    @property
    def train_pairs_per_second(self) -> float:
        return self.items_trained / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def train_inputs(self) -> int:
        return self.items_per_epoch


# --------------------------------------------------------------------------------------------
# the parts


def accelerator(config: TrainingConfig) -> Any:
    """An ``Accelerator`` with the config's precision and accumulation."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import is_bf16_available

    precision = "bf16" if config.bf16 and is_bf16_available() else "no"
    previous = AcceleratorState._shared_state.get("_mixed_precision")
    if previous not in (None, precision) and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one process-wide state and refuses a new precision; in a single
        # process (a notebook, the tests) starting it afresh is safe.
        AcceleratorState._reset_state()
    # cpu=True whenever the device resolves to the CPU ("auto" without a GPU too): only then does a
    # launch of several processes on a CPU machine form one gloo group instead of N lone "main" processes
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.grad_accum_steps,
                       cpu=resolve_device(config.device).type == "cpu")


def optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norm weights (the usual BERT recipe)."""
    trainable = [p for p in model.parameters() if p.requires_grad]  # frozen layers (freeze_layers) stay out
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)


def sync_lr(scheduler: Any) -> None:
    """The restored optimizer holds the learning rate of the *saved* schedule; when ``epochs`` grew
    it must come from the new one (a plain resume gets back the same value)."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the LambdaLR
    for group, base, fn in zip(inner.optimizer.param_groups, inner.base_lrs, inner.lr_lambdas):
        group["lr"] = base * fn(inner.last_epoch)


class Shuffled(torch.utils.data.Dataset):
    """This epoch's items in a (seed, epoch)-seeded order. With ``pick`` (an item's quality and the
    epoch's generator -> the candidate indices to train on), items come as (item, indices)."""

    def __init__(self, items: list[Any], seed: int,
                 pick: Callable[[Any, np.random.Generator], list[int]] | None = None) -> None:
        self.items, self.seed, self.pick = items, seed, pick
        self.resample(0)

    def resample(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self.order = rng.permutation(len(self.items)).tolist()
        self.chosen = [self.pick(it, rng) for it in self.items] if self.pick else []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> Any:
        n = self.order[k]
        return (self.items[n], self.chosen[n]) if self.pick else self.items[n]


def improves(val: Mapping[str, float], best: Mapping[str, float], key: str, *, higher_is_better: bool) -> bool:
    """Whether validation figure ``key`` beats the best so far: strictly (ties keep the earlier
    epoch); a missing or NaN best is beaten by anything, a NaN now beats nothing."""
    now, then = val.get(key, math.nan), best.get(key, math.nan)
    if math.isnan(then):
        return True
    return not math.isnan(now) and (now > then if higher_is_better else now < then)


# --------------------------------------------------------------------------------------------
# the run folder: state.json and one checkpoint per epoch


def _fresh_state(recipe: Recipe) -> dict[str, Any]:
    return {"kind": recipe.kind, "config_key": recipe.config.key(ignore=("epochs",)), "data_key": recipe.data_key,
            "completed_epochs": 0, "best_epoch": 0, "train_loss": [], "val": [], "train_seconds": []}


def load_state(out_dir: Path, recipe: Recipe, resume: bool) -> dict[str, Any]:
    """The record of the last completed epoch, or a fresh one (resume=False clears an old run)."""
    path = out_dir / STATE_FILE
    if not path.exists():
        return _fresh_state(recipe)
    if not resume:
        for child in out_dir.iterdir():
            if child.name in (STATE_FILE, "best") or child.name.startswith(("epoch-", ".epoch-", ".best.")):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        return _fresh_state(recipe)
    state = json.loads(path.read_text(encoding="utf-8"))
    # runs written before the kind was recorded are PairRanker runs, whose keys alone tell them apart
    if state.get("kind", recipe.kind) != recipe.kind or state["config_key"] != recipe.config.key(ignore=("epochs",)) \
            or state["data_key"] != recipe.data_key:
        raise ValueError(f"{out_dir} holds a {state.get('kind', 'pairranker')} run with other settings or data; use "
                         f"another out_dir, or resume=False to start over there")
    state.setdefault("kind", recipe.kind)
    return state


def save_checkpoint(accelerator: Any, model: nn.Module, out_dir: Path, epoch: int, weights_folder: str) -> None:
    """epoch-K/ = <weights_folder>/ (loadable) + train_state/ (optimizer, scheduler, RNG): written
    beside, then renamed, so a folder named epoch-K is always complete."""
    staging, target = out_dir / f".epoch-{epoch}.partial", out_dir / f"epoch-{epoch}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)  # an orphan of a run killed before its state.json
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging / "train_state"))
    if accelerator.is_main_process:
        accelerator.unwrap_model(model)._write(staging / weights_folder)
        staging.rename(target)
    accelerator.wait_for_everyone()


def record_epoch(accelerator: Any, model: nn.Module, out_dir: Path, state: dict[str, Any], recipe: Recipe,
                 epoch: int, loss: float, seconds: float, val: dict[str, float]) -> None:
    """Checkpoint epoch K, then point state.json at it, then prune: every step leaves a usable run."""
    save_checkpoint(accelerator, model, out_dir, epoch, recipe.weights_folder)
    best_val = state["val"][state["best_epoch"] - 1] if state["best_epoch"] else None
    if not val or best_val is None or recipe.better(val, best_val):  # ties keep the earlier epoch
        state["best_epoch"] = epoch
    state["train_loss"].append(loss)
    state["train_seconds"].append(seconds)
    state["val"].append(val)
    state["completed_epochs"] = epoch
    state.setdefault("processes", []).append(accelerator.num_processes)  # effective batch = processes x batch_size
    if accelerator.is_main_process:
        atomic_write_json(out_dir / STATE_FILE, state)
        for old in out_dir.glob("epoch-*"):
            if old.name not in {f"epoch-{epoch}", f"epoch-{state['best_epoch']}"}:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


# --------------------------------------------------------------------------------------------
# the loop


def train_epoch(accelerator: Any, model: nn.Module, loader: Any, optimizer: Any, scheduler: Any, recipe: Recipe,
                epoch: int, progress: bool) -> float:
    """One pass over this epoch's data; the mean loss (over processes too)."""
    config = recipe.config
    torch.manual_seed(config.seed + epoch)  # dropout: reproducible per epoch, also after a resume
    model.train()
    losses = []
    bar = tqdm(loader, desc=f"{recipe.kind} epoch {epoch + 1}/{config.epochs}",
               disable=not (progress and accelerator.is_local_main_process))
    for batch in bar:
        with accelerator.accumulate(model):  # steps the optimizer every grad_accum_steps batches
            loss = recipe.loss(model, batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        losses.append(loss.detach().float())
        bar.set_postfix(loss=f"{losses[-1].item():.4f}")
    return accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()


def _report(recipe: Recipe, state: dict[str, Any], out_dir: Path, done: int, start_time: float,
            trained_here: bool) -> TrainReport:
    epoch_seconds = list(state["train_seconds"])
    this_call = epoch_seconds[done:] if trained_here else []
    return TrainReport(
        kind=recipe.kind, out_dir=str(out_dir), best_dir=str(out_dir / "best"), best_epoch=state["best_epoch"],
        epochs_completed=state["completed_epochs"], resumed_from_epoch=done, train_loss=state["train_loss"],
        val=state["val"], seconds=time.perf_counter() - start_time, train_seconds=sum(this_call),
        items_per_epoch=recipe.items_per_epoch, items_trained=recipe.items_per_epoch * len(this_call),
        skipped_examples=recipe.skipped_examples, config=asdict(recipe.config), epoch_seconds=epoch_seconds)


def train(recipe: Recipe, out_dir: str | Path, *, progress: bool = True, resume: bool = True) -> TrainReport:
    """Train ``recipe``'s model to ``config.epochs`` in ``out_dir`` (resuming what is there) and
    publish the best epoch on validation to ``out_dir/best``; without validation data the last
    epoch is the best. Under ``accelerate launch`` only the main process publishes."""
    from transformers import get_linear_schedule_with_warmup

    start_time = time.perf_counter()
    config = recipe.config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(out_dir, recipe, resume)
    done = state["completed_epochs"]
    if done >= config.epochs:
        publish_best(out_dir, state["best_epoch"], recipe.weights_folder, force=False)
        return _report(recipe, state, out_dir, done, start_time, False)
    accel = accelerator(config)
    model = recipe.build_model()
    data = recipe.training_data(model)
    loader = torch.utils.data.DataLoader(data, batch_size=config.batch_size, shuffle=False,  # data shuffles itself
                                         collate_fn=recipe.collate(model))
    optim = optimizer(model, config)
    total_steps = math.ceil(len(loader) / config.grad_accum_steps) * config.epochs
    scheduler = get_linear_schedule_with_warmup(optim, int(config.warmup_ratio * total_steps), total_steps)
    model, optim, loader, scheduler = accel.prepare(model, optim, loader, scheduler)
    if done:  # weights, optimizer, scheduler and RNG of the last completed epoch
        accel.load_state(str(out_dir / f"epoch-{done}" / "train_state"))
        sync_lr(scheduler)
    for epoch in range(done, config.epochs):
        data.resample(epoch)
        epoch_start = time.perf_counter()
        loss = train_epoch(accel, model, loader, optim, scheduler, recipe, epoch, progress)
        seconds = time.perf_counter() - epoch_start
        val = recipe.validate(accel.unwrap_model(model))
        record_epoch(accel, model, out_dir, state, recipe, epoch + 1, loss, seconds, val)
        if progress and accel.is_local_main_process:
            print(f"{recipe.kind} epoch {epoch + 1}: loss {loss:.4f} {recipe.shown(val)}")
    if accel.is_main_process:
        publish_best(out_dir, state["best_epoch"], recipe.weights_folder, force=True)
    return _report(recipe, state, out_dir, done, start_time, accel.is_main_process)

