"""The llm-blender side of benchmarks/bench_pairranker.py (run by it, inside its own venv).

Builds the `llm-blender` 0.0.2 package's own PairRanker (`CrossCompareReranker`) the way its own
`load_ranker` builds it for a BERT-like backbone, then serves timed rounds on stdin/stdout (see
`serve`): full-matrix inference through `Blender.rank` (its DataLoader, `CrossCompareCollator`
and `_full_predict`), and training steps through its collator and the model's own training
forward (pair sampling and the instructgpt loss inside), backward, clipping and AdamW.

This file also holds the pieces both workers share (`serve`, `TokenCounter`, `peak_rss_mib`): it
needs only torch, transformers<5 and llm-blender and must not import blender_lib (which needs
transformers 5); ours imports these pieces from here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, Protocol

import torch

READY, RESULT = "BENCH_READY ", "BENCH_RESULT "


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class TokenCounter:
    """Counts the rows, padded tokens and real tokens fed to the encoder (a forward pre-hook)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.rows = self.padded = self.real = 0
        encoder.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        mask = kwargs["attention_mask"]
        self.rows += mask.shape[0]
        self.padded += mask.numel()
        self.real += int(mask.sum())

    def take(self) -> dict[str, int]:
        """The counts since the last call, and start afresh."""
        counts = {"encoder_rows": self.rows, "padded_tokens": self.padded, "real_tokens": self.real}
        self.rows = self.padded = self.real = 0
        return counts


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


class Bench(Protocol):
    """What a worker does; `serve` calls these on the orchestrator's commands."""

    def info(self) -> dict[str, Any]: ...
    def warmup_infer(self) -> dict[str, Any]: ...
    def infer(self, chunk: int) -> dict[str, Any]: ...
    def warmup_train(self) -> dict[str, Any]: ...
    def train(self, round_: int) -> dict[str, Any]: ...


def serve(bench: Bench) -> None:
    """The worker protocol: print `BENCH_READY {info}`, then for each stdin line
    (`warmup_infer`, `infer K`, `warmup_train`, `train K`, `quit`) run it and print
    `BENCH_RESULT {figures + peak RSS so far}`. Only one worker computes at a time: the
    orchestrator waits for each answer before it sends the next command to anyone."""
    print(READY + json.dumps(bench.info()), flush=True)
    for line in sys.stdin:
        command, *arg = line.split()
        if command == "quit":
            break
        method = getattr(bench, command)
        out = method(int(arg[0])) if arg else method()
        print(RESULT + json.dumps({**out, "peak_rss_mib": round(peak_rss_mib(), 1)}), flush=True)


def inference_figures(pairs: int, seconds: float, scores: list[float], counts: dict[str, int]) -> dict[str, Any]:
    return {"pairs": pairs, "seconds": seconds, "finite_scores": all(math.isfinite(v) for v in scores),
            "score_abs_max": max((abs(v) for v in scores), default=0.0), **counts}


def training_figures(pairs: int, seconds: float, losses: list[float], counts: dict[str, int]) -> dict[str, Any]:
    return {"pairs": pairs, "seconds": seconds, "losses": [round(v, 4) for v in losses],
            "finite_losses": all(math.isfinite(v) for v in losses), **counts}


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor],
               max_grad_norm: float) -> float:
    loss = loss_fn()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad()
    return float(loss)


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, no decay on biases and norm weights (what HF Trainer, which llm-blender trains with, does)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


# --------------------------------------------------------------------------------------------
# llm-blender


class LLMBlenderBench:
    def __init__(self, inputs: dict[str, Any]) -> None:
        import transformers
        from llm_blender import Blender
        from llm_blender.blender.blender_utils import load_ranker
        from llm_blender.blender.config import BlenderConfig
        from llm_blender.pair_ranker.config import RankerConfig

        transformers.logging.set_verbosity_error()
        self.inputs, s = inputs, inputs["settings"]
        self.settings = s
        torch.set_num_threads(s["threads"])
        start = time.perf_counter()
        # Their load_ranker: build_tokenizer, CrossCompareCollator (adds <|source|>, <|candidate1|>,
        # <|candidate2|>, <|candidate|>), BertModel.from_pretrained, resize_token_embeddings, the head.
        self.config = RankerConfig(
            ranker_type="pairranker", model_type="bert", model_name=s["model_path"],
            source_maxlength=s["source_max_length"], candidate_maxlength=s["candidate_max_length"],
            n_tasks=len(s["metrics"]), num_pos=1, num_neg=1, sub_sampling_mode="all_pair", loss_type="instructgpt",
            inference_mode="full", drop_out=s["head_dropout"], fp16=False, device="cpu")
        torch.manual_seed(s["seed"])
        ranker, tokenizer, self.collator = load_ranker(self.config)
        self.ranker = ranker.float().eval()  # what Blender.loadranker does off CUDA/MPS: fp32
        # Blender.rank is the package's full-matrix API; give it this ranker.
        self.blender = Blender(blender_config=BlenderConfig(device="cpu", use_tqdm=False))
        self.blender.ranker_config, self.blender.ranker = self.config, self.ranker
        self.blender.ranker_tokenizer, self.blender.ranker_collator = tokenizer, self.collator
        self.load_seconds = time.perf_counter() - start
        self.counter = TokenCounter(self.ranker.pretrained_model)
        self.optimizer = adamw(self.ranker, s["lr"], s["weight_decay"])

    def info(self) -> dict[str, Any]:
        import transformers

        encoder_config = self.ranker.pretrained_model.config
        return {"implementation": "llm-blender CrossCompareReranker (Blender.rank, model training forward)",
                "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                             "transformers": transformers.__version__, "tokenizers": version("tokenizers"),
                             "llm-blender": version("llm-blender"), "accelerate": version("accelerate")},
                "torch_threads": torch.get_num_threads(), "dtype": str(next(self.ranker.parameters()).dtype),
                "compute": "fp32", "attention_implementation": getattr(encoder_config, "_attn_implementation", None),
                "attention_dropout": encoder_config.attention_probs_dropout_prob,
                "hidden_dropout": encoder_config.hidden_dropout_prob,
                "parameters": sum(p.numel() for p in self.ranker.parameters()), "load_seconds": round(self.load_seconds, 2),
                "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")}}

    def _rank(self, examples: list[dict[str, Any]]) -> list[float]:
        scores = self.blender.rank([e["source"] for e in examples], [e["candidates"] for e in examples],
                                   return_scores=True, batch_size=self.settings["infer_batch_size"])
        return [float(v) for row in scores for v in row]

    def warmup_infer(self) -> dict[str, Any]:
        self._rank(self.inputs["warmup_examples"])
        self.counter.take()
        return {}

    def infer(self, chunk: int) -> dict[str, Any]:
        examples = self.inputs["test_chunks"][chunk]
        scores, seconds = timed(lambda: self._rank(examples))
        pairs = sum(len(e["candidates"]) * (len(e["candidates"]) - 1) for e in examples)
        return inference_figures(pairs, seconds, scores, self.counter.take())

    def _step(self, batch_pairs: list[dict[str, Any]]) -> float:
        """Their training path on our pairs: each pair is a two-candidate input; the model's
        training forward samples its one pair (random left/right order) and computes the loss."""
        def loss() -> torch.Tensor:
            batch = self.collator([{"source": p["source"], "candidates": [p["a"], p["b"]],
                                    "scores": [p["scores_a"], p["scores_b"]]} for p in batch_pairs])
            return self.ranker(**batch)["loss"]

        return train_step(self.ranker, self.optimizer, loss, self.settings["max_grad_norm"])

    def warmup_train(self) -> dict[str, Any]:
        torch.manual_seed(self.settings["seed"])
        self.ranker.train()
        self._step(self.inputs["train_warmup_batch"])
        self.counter.take()
        return {}

    def train(self, round_: int) -> dict[str, Any]:
        batches = self.inputs["train_rounds"][round_]
        losses, seconds = timed(lambda: [self._step(b) for b in batches])
        return {**training_figures(sum(len(b) for b in batches), seconds, losses, self.counter.take()),
                "batching": "random order, as drawn (HF Trainer's default shuffled batches)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("inputs", help="the JSON file bench_pairranker.py wrote")
    args = parser.parse_args()
    with open(args.inputs, encoding="utf-8") as f:
        serve(LLMBlenderBench(json.load(f)))


if __name__ == "__main__":
    main()
