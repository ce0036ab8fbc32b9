"""PairRanker throughput on the CPU: ours (blender_lib.rankers) against llm-blender's own.

What is measured, for each implementation, on the same backbone (the packaged all-MiniLM-L6-v2,
a 6-layer BERT), the same inputs, the same torch thread count, fp32 weights and fp32 compute:

- **full-matrix inference pairs/s**: every ordered pair (i, j), i != j, of the N = 6 candidates
  of each test input (`data/mixinstruct/test.jsonl`), tokenization and collation included.
  Ours: `blender_lib.rankers._matrices` (what `rank` and `evaluate_pairranker` run; its
  tokenization cache is cleared before every round). Theirs: the `llm-blender` 0.0.2 package's
  `Blender.rank` with its `CrossCompareCollator` and `CrossCompareReranker._full_predict`. Both
  put the same number of pairs in a forward pass (`--infer-batch-size`: our `batch_size` counts
  pairs; theirs counts inputs, and each of its forwards holds one pair of every input of the
  batch), so the test inputs are ranked in chunks of that many inputs, one chunk per round.
- **training pairs/s**: forward + loss + backward + gradient clipping (1.0) + AdamW step, on the
  very same (source, candidate_i, candidate_j, metric scores) pairs drawn from the training
  split, `--train-batch-size` pairs per step, `--train-steps-per-round` steps per round, each
  implementation batching them its own way. Ours: the library's `_PairSampler` (length-grouped
  batches when the library groups by length, as `train_pairranker` does), its training collate
  function (`PairFormatter`), `PairRankerModel`, `pair_loss`. Theirs: the pairs in the order
  drawn (HF Trainer's random batches), its collator on two-candidate inputs and the model's own
  training forward (pair sampling and the instructgpt loss inside).
- **peak memory**: peak RSS (`getrusage`) of each worker process after inference and at the end.

The CPU of the machine this was written on is shared with other jobs, so the implementations run
*interleaved*: one worker process per implementation stays loaded, and the rounds alternate
(ours, theirs, theirs, ours, ...; only one computes at a time), so both see the same background
load on average. Warm-ups (one ranking of two training inputs; one training step) are not
timed. Figures: total pairs / total seconds over all rounds; the ratio ours / theirs of those, and
as a check the geometric mean of the per-round ratios (inference rounds pair the same inputs;
training rounds hold the same pairs only over all rounds, since ours regroups them by length).

`llm-blender` 0.0.2 imports only with `transformers<5`, so it runs in a virtual environment this
script creates once at `.bench/llm-blender-venv` (see `ensure_llm_blender_venv`).
Writes `benchmarks/pairranker.json`.

Run: `.venv/bin/python benchmarks/bench_pairranker.py [--examples N] [--threads 2] [--no-bf16]`
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared worker pieces live beside this file
from _llm_blender_worker import (READY, RESULT, TokenCounter, adamw, inference_figures, serve,  # noqa: E402
                                 timed, train_step, training_figures)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_DIR = ROOT / ".bench"
VENV = BENCH_DIR / "llm-blender-venv"
WORKER = HERE / "_llm_blender_worker.py"
OUT = HERE / "pairranker.json"
LLM_BLENDER = "llm-blender==0.0.2"
TRANSFORMERS_PIN = "transformers<5"


# --------------------------------------------------------------------------------------------
# the llm-blender virtual environment


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_works(python: Path, torch_version: str) -> bool:
    """True when the venv imports llm-blender's PairRanker with our torch build and transformers 4."""
    if not python.exists():
        return False
    probe = ("import torch, transformers, llm_blender; from llm_blender.pair_ranker.ranker import CrossCompareReranker; "
             f"assert torch.__version__ == {torch_version!r}, torch.__version__; "
             "assert torch.version.cuda is None, 'a CUDA torch'; "
             "assert int(transformers.__version__.split('.')[0]) < 5, transformers.__version__")
    return subprocess.run([str(python), "-c", probe], capture_output=True, env=worker_env(1)).returncode == 0


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args], check=True)


def ensure_llm_blender_venv(torch_version: str, *, rebuild: bool = False) -> tuple[Path, list[str]]:
    """Create (once) the venv for llm-blender; reuse it when it already works.

    Recipe: `python -m venv`; `pip install torch==<our exact build, e.g. 2.13.0+cpu>` first (the
    local CPU wheel: nothing can pull a CUDA one); then `pip install -c <that torch pin>
    "transformers<5" llm-blender==0.0.2` with its declared dependencies (accelerate, safetensors,
    dataclasses-json, sentencepiece, protobuf, numpy; huggingface_hub comes with transformers)."""
    python = _venv_python(VENV)
    recipe = [f"python3 -m venv {VENV.relative_to(ROOT)}", f"pip install torch=={torch_version}",
              f"pip install -c <file: torch=={torch_version}> '{TRANSFORMERS_PIN}' {LLM_BLENDER}"]
    if not rebuild and _venv_works(python, torch_version):
        return python, recipe
    shutil.rmtree(VENV, ignore_errors=True)
    BENCH_DIR.mkdir(exist_ok=True)
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    print(f"creating {VENV} (once; a few minutes) ...", file=sys.stderr, flush=True)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    _pip(python, f"torch=={torch_version}")
    constraints = BENCH_DIR / "llm-blender-constraints.txt"
    constraints.write_text(f"torch=={torch_version}\n", encoding="utf-8")
    _pip(python, "-c", str(constraints), TRANSFORMERS_PIN, LLM_BLENDER)
    if not _venv_works(python, torch_version):
        raise RuntimeError(f"{VENV} was built but cannot import llm-blender's PairRanker; see the pip output above")
    return python, recipe


def venv_versions(python: Path) -> dict[str, str]:
    code = ("import json; from importlib.metadata import version as v; print(json.dumps({p: v(p) for p in "
            "['torch', 'transformers', 'tokenizers', 'llm-blender', 'accelerate', 'huggingface-hub', 'numpy']}))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)


# --------------------------------------------------------------------------------------------
# inputs, the same for both implementations


def load_split(name: str) -> list[dict[str, Any]]:
    path = ROOT / "data" / "mixinstruct" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ranking_inputs(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from blender_lib.examples import source_text

    return [{"id": ex["id"], "source": source_text(ex), "candidates": [c["text"] for c in ex["candidates"]]}
            for ex in examples]


def training_pairs(examples: list[dict[str, Any]], metrics: tuple[str, ...], n: int, seed: int) -> list[dict[str, Any]]:
    """n random (source, a, b) pairs of distinct candidate texts, random order, with their metric scores."""
    from blender_lib.examples import source_text

    rng = np.random.default_rng(seed)
    pairs: list[dict[str, Any]] = []
    while len(pairs) < n:
        ex = examples[int(rng.integers(len(examples)))]
        distinct = list({c["text"]: c for c in reversed(ex["candidates"])}.values())  # first of equal texts
        if len(distinct) < 2:
            continue
        a, b = (distinct[k] for k in rng.choice(len(distinct), size=2, replace=False))
        pairs.append({"source": source_text(ex), "a": a["text"], "b": b["text"],
                      "scores_a": [float(a["scores"][m]) for m in metrics],
                      "scores_b": [float(b["scores"][m]) for m in metrics]})
    return pairs


def build_inputs(args: argparse.Namespace) -> dict[str, Any]:
    from blender_lib.models import resolve_model_path
    from blender_lib.rankers import PairRankerConfig

    config = PairRankerConfig()  # our defaults: the budgets, metrics, lr, ... both sides use
    test, train = load_split("test"), load_split("train")
    test = ranking_inputs(test[: args.examples] if args.examples else test)
    b, steps = args.train_batch_size, args.train_steps_per_round
    pairs = training_pairs(train, config.metrics, b * (1 + steps * args.train_rounds), args.seed)
    batches = [pairs[k : k + b] for k in range(0, len(pairs), b)]
    settings = {
        "backbone": config.backbone, "model_path": resolve_model_path(config.backbone)[0],
        "metrics": list(config.metrics), "source_max_length": config.source_max_length,
        "candidate_max_length": config.candidate_max_length, "head_dropout": config.head_dropout,
        "lr": config.lr, "weight_decay": config.weight_decay, "max_grad_norm": config.max_grad_norm,
        "seed": args.seed, "threads": args.threads, "infer_batch_size": args.infer_batch_size,
        "train_batch_size": b, "train_steps_per_round": steps, "train_rounds": args.train_rounds,
        "inference_passes": args.passes, "dtype": "float32",
    }
    return {"settings": settings, "warmup_examples": ranking_inputs(train[:2]),
            "test_chunks": [test[k : k + args.infer_batch_size] for k in range(0, len(test), args.infer_batch_size)],
            "train_warmup_batch": batches[0],
            "train_rounds": [batches[1 + r * steps : 1 + (r + 1) * steps] for r in range(args.train_rounds)]}


# --------------------------------------------------------------------------------------------
# our worker (the project venv, its own process)


class OursBench:
    """Our side. ``device`` other than the CPU (e.g. "cuda") is what benchmarks/run_all.py uses on a GPU."""

    def __init__(self, inputs: dict[str, Any], bf16: bool, device: str = "cpu") -> None:
        import torch
        import transformers

        from blender_lib.rankers import PairRankerConfig, PairRankerModel, _collate_pairs

        transformers.logging.set_verbosity_error()
        self.inputs, s = inputs, inputs["settings"]
        self.settings, self.bf16 = s, bf16
        torch.set_num_threads(s["threads"])
        self.config = replace(PairRankerConfig(), bf16=bf16, device=device, seed=s["seed"],
                              batch_size=s["train_batch_size"], eval_batch_size=s["infer_batch_size"])
        self.ranker, self.load_seconds = timed(lambda: PairRankerModel.from_backbone(self.config, device=device).eval())
        self.counter = TokenCounter(self.ranker.encoder)
        self.collate = _collate_pairs(self.ranker.formatter)  # what train_pairranker's DataLoader uses
        self.optimizer = adamw(self.ranker, s["lr"], s["weight_decay"])  # = rankers._optimizer
        self.train_batches: list[list[tuple[str, str, str, np.ndarray]]] | None = None
        self.batching = "random order (as drawn)"

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        encoder_config = self.ranker.encoder.config
        return {"implementation": "blender_lib.rankers (PairRankerModel, _matrices, training collate + pair_loss)",
                "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                             "transformers": transformers.__version__},
                "torch_threads": torch.get_num_threads(), "dtype": str(next(self.ranker.parameters()).dtype),
                "compute": "bf16 autocast" if self.bf16 else "fp32",
                "attention_implementation": getattr(encoder_config, "_attn_implementation", None),
                "attention_dropout": encoder_config.attention_probs_dropout_prob,
                "hidden_dropout": encoder_config.hidden_dropout_prob,
                "parameters": sum(p.numel() for p in self.ranker.parameters()),
                "non_embedding_parameters": sum(p.numel() for n, p in self.ranker.named_parameters()
                                                if ".embeddings." not in f".{n}"),
                "device": str(self.ranker.device), "load_seconds": round(self.load_seconds, 2),
                "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")}}

    def _matrices(self, examples: list[dict[str, Any]]) -> list[float]:
        from blender_lib.rankers import _matrices

        self.ranker.formatter.tokens.cache_clear()  # every round tokenizes from scratch, as theirs does
        matrices = _matrices(self.ranker, [e["source"] for e in examples], [e["candidates"] for e in examples],
                             batch_size=self.config.eval_batch_size)
        return [float(v) for m in matrices for v in m[~np.eye(len(m), dtype=bool)]]

    def warmup_infer(self) -> dict[str, Any]:
        self._matrices(self.inputs["warmup_examples"])
        self.counter.take()
        return {}

    def infer(self, chunk: int) -> dict[str, Any]:
        examples = self.inputs["test_chunks"][chunk]
        scores, seconds = timed(lambda: self._matrices(examples))
        return inference_figures(len(scores), seconds, scores, self.counter.take())

    def _library_batches(self, pairs: list[dict[str, Any]]) -> list[list[tuple[str, str, str, np.ndarray]]]:
        """The timed pairs batched the way train_pairranker batches: through the library's
        `_PairSampler` (each pair a two-candidate pool, so it yields exactly that pair, in a random
        order), length-grouped when the library groups by length."""
        from blender_lib import rankers

        pools = [rankers._Pool(p["source"], [p["a"], p["b"]], np.array([p["scores_a"], p["scores_b"]]))
                 for p in pairs]
        sampler = rankers._PairSampler(pools, pairs_per_input=1, seed=self.settings["seed"])
        if hasattr(sampler, "group_by_length"):
            formatter = self.ranker.formatter
            sampler.group_by_length(self.config.batch_size, lambda item: len(formatter.encode(*item[:3])[0]))
            sampler.resample(0)
            self.batching = "the library's _PairSampler.group_by_length (as train_pairranker)"
        items = [sampler[k] for k in range(len(sampler))]
        return [items[k : k + self.config.batch_size] for k in range(0, len(items), self.config.batch_size)]

    def _step(self, items: list[tuple[str, str, str, np.ndarray]]) -> float:
        """The body of rankers._train_epoch without accelerate (fp32 there is a plain loop too)."""
        import torch

        from blender_lib.rankers import pair_loss

        def loss() -> torch.Tensor:
            batch = {k: v.to(self.ranker.device) for k, v in self.collate(items).items()}
            delta = batch.pop("delta")
            with torch.autocast(self.ranker.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                return pair_loss(*self.ranker(**batch), delta)

        return train_step(self.ranker, self.optimizer, loss, self.config.max_grad_norm)

    def warmup_train(self) -> dict[str, Any]:
        import torch

        torch.manual_seed(self.settings["seed"])
        self.ranker.train()
        self._step([(p["source"], p["a"], p["b"], np.array(p["scores_a"]) - np.array(p["scores_b"]))
                    for p in self.inputs["train_warmup_batch"]])
        self.counter.take()
        return {}

    def train(self, round_: int) -> dict[str, Any]:
        """Round k: the k-th `train_steps_per_round` batches. The same pairs as theirs over all
        rounds; batching them (in round 0) is timed, as it is part of a training epoch."""
        steps = self.settings["train_steps_per_round"]

        def work() -> list[float]:
            if self.train_batches is None:
                self.train_batches = self._library_batches([p for r in self.inputs["train_rounds"] for b in r for p in b])
            return [self._step(b) for b in self.train_batches[round_ * steps : (round_ + 1) * steps]]

        losses, seconds = timed(work)
        pairs = sum(len(b) for b in self.train_batches[round_ * steps : (round_ + 1) * steps])
        return {**training_figures(pairs, seconds, losses, self.counter.take()), "batching": self.batching}


# --------------------------------------------------------------------------------------------
# orchestration


def worker_env(threads: int) -> dict[str, str]:
    """The workers' environment. The thread count is set by torch.set_num_threads in each worker
    (and RAYON_NUM_THREADS for the tokenizers); OMP_NUM_THREADS / MKL_NUM_THREADS are left unset:
    setting them raised our peak RSS by ~250 MB here without being what users run."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0",
               RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true", PYTHONWARNINGS="ignore")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), str(HERE), env.get("PYTHONPATH")) if p)
    return env


class Worker:
    """A worker process that stays loaded and answers one command at a time."""

    def __init__(self, name: str, command: list[str], threads: int) -> None:
        print(f"[{name}] $ {' '.join(command)}", file=sys.stderr, flush=True)
        self.name = name
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=worker_env(threads), cwd=ROOT)
        self.info = json.loads(self._answer(READY))

    def _answer(self, prefix: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :]
        raise RuntimeError(f"worker {self.name} exited with {self.process.wait()} before answering")

    def call(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        load = os.getloadavg()[0]
        out = json.loads(self._answer(RESULT))
        out["load_average_1min"] = round(max(load, os.getloadavg()[0]), 2)
        return out

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        self.process.wait(timeout=60)


def run_rounds(workers: dict[str, Worker], commands: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each command on every worker, one at a time; the order of the workers alternates by round."""
    names = list(workers)
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for k, command in enumerate(commands):
        for name in (names if k % 2 == 0 else names[::-1]):
            out = workers[name].call(command)
            rounds[name].append(out)
            print(f"  {command:<8} {name:<12} {out['pairs'] / out['seconds']:7.2f} pairs/s  (load {out['load_average_1min']})",
                  file=sys.stderr, flush=True)
    return rounds


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    pairs, seconds = sum(r["pairs"] for r in rounds), sum(r["seconds"] for r in rounds)
    rows = max(sum(r["encoder_rows"] for r in rounds), 1)
    out = {"pairs": pairs, "seconds": round(seconds, 2), "pairs_per_second": round(pairs / seconds, 2),
           "per_round_pairs_per_second": [round(r["pairs"] / r["seconds"], 2) for r in rounds],
           "model_pairs_run": sum(r["encoder_rows"] for r in rounds),
           "padded_tokens_per_pair_run": round(sum(r["padded_tokens"] for r in rounds) / rows, 1),
           "real_tokens_per_pair_run": round(sum(r["real_tokens"] for r in rounds) / rows, 1),
           "load_average_1min_max": max(r["load_average_1min"] for r in rounds)}
    if "finite_scores" in rounds[0]:
        out["finite_scores"] = all(r["finite_scores"] for r in rounds)
        out["score_abs_max"] = round(max(r["score_abs_max"] for r in rounds), 4)
    else:
        out["finite_losses"] = all(r["finite_losses"] for r in rounds)
        out["losses"] = [v for r in rounds for v in r["losses"]]
        out["batching"] = rounds[-1].get("batching")
    return out


def ratios(ours: dict[str, Any], theirs: dict[str, Any], ours_rounds: dict[str, list], theirs_rounds: dict[str, list],
           part: str) -> dict[str, float]:
    paired = [(a["pairs"] / a["seconds"]) / (b["pairs"] / b["seconds"])
              for a, b in zip(ours_rounds[part], theirs_rounds[part])]
    return {"total": round(ours[part]["pairs_per_second"] / theirs[part]["pairs_per_second"], 2),
            "per_round_geometric_mean": round(math.exp(np.mean(np.log(paired))), 2)}


def sanity_notes(results: dict[str, dict[str, Any]], threads: int) -> list[str]:
    """Anything odd, reported (not asserted)."""
    notes = []
    for name, r in results.items():
        inf, tr = r["inference"], r["training"]
        if not inf["finite_scores"]:
            notes.append(f"{name}: non-finite inference logits")
        if not tr["finite_losses"]:
            notes.append(f"{name}: non-finite training loss")
        if inf["model_pairs_run"] != inf["pairs"]:
            notes.append(f"{name}: ran {inf['model_pairs_run']} pairs through the model for {inf['pairs']} ordered "
                         f"pairs (identical (source, a, b) triples, from duplicate candidate texts, run once)")
        load = max(inf["load_average_1min_max"], tr["load_average_1min_max"])
        if load > threads + 0.5:
            notes.append(f"{name}: the 1-minute load average reached {load} on {os.cpu_count()} cores: other "
                         f"processes shared the CPU during some rounds (absolute figures low and noisy; the "
                         f"interleaved rounds keep the ratio fair on average)")
    return notes


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    rows = ["| implementation | compute | inference pairs/s | training pairs/s | peak RSS MiB (after inference / end) |",
            "|---|---|---:|---:|---:|"]
    for name, r in results.items():
        rows.append(f"| {name} | {r['compute']} | {r['inference']['pairs_per_second']} | "
                    f"{r['training']['pairs_per_second']} | {r['peak_rss_mib']['after_inference']} / "
                    f"{r['peak_rss_mib']['end']} |")
    return "\n".join(rows)


def orchestrate(args: argparse.Namespace) -> None:
    import torch

    started = time.perf_counter()
    python, recipe = ensure_llm_blender_venv(torch.__version__, rebuild=args.rebuild_venv)
    inputs = build_inputs(args)
    inputs_path = BENCH_DIR / "pairranker-inputs.json"
    inputs_path.write_text(json.dumps(inputs), encoding="utf-8")
    me = [sys.executable, str(Path(__file__).resolve()), "--inputs", str(inputs_path), "--worker"]
    commands = {"ours": [*me, "ours"], "llm_blender": [str(python), str(WORKER), str(inputs_path)]}
    if not args.no_bf16:
        commands["ours_bf16"] = [*me, "ours-bf16"]
    workers = {name: Worker(name, command, args.threads) for name, command in commands.items()}
    try:
        for w in workers.values():
            w.call("warmup_infer")
        n_chunks = len(inputs["test_chunks"])
        infer = run_rounds(workers, [f"infer {k}" for _ in range(args.passes) for k in range(n_chunks)])
        rss_after_inference = {n: rounds[-1]["peak_rss_mib"] for n, rounds in infer.items()}
        for w in workers.values():
            w.call("warmup_train")
        train = run_rounds(workers, [f"train {k}" for k in range(args.train_rounds)])
    finally:
        for w in workers.values():
            w.close()
    results = {n: {**workers[n].info, "inference": summarize(infer[n]), "training": summarize(train[n]),
                   "peak_rss_mib": {"after_inference": rss_after_inference[n], "end": train[n][-1]["peak_rss_mib"]}}
               for n in workers}
    rounds = {n: {"inference": infer[n], "training": train[n]} for n in workers}
    report = {
        "what": "PairRanker full-matrix inference pairs/s and training pairs/s on the CPU: ours vs llm-blender 0.0.2",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": args.threads},
        "settings": {**inputs["settings"], "model_path": Path(inputs["settings"]["model_path"]).name,
                     "test_examples": sum(len(c) for c in inputs["test_chunks"]),
                     "test_examples_available": len(load_split("test")),
                     "candidates_per_example": sorted({len(e["candidates"]) for c in inputs["test_chunks"] for e in c}),
                     "compute": "fp32 weights and compute on the CPU for both ('ours_bf16', our default setting "
                                "bf16 autocast, is an extra)",
                     "schedule": "workers stay loaded; rounds interleaved, one computing at a time"},
        "llm_blender_venv": {"path": str(VENV.relative_to(ROOT)), "recipe": recipe, "versions": venv_versions(python)},
        "ratio_ours_over_theirs": {part: ratios(results["ours"], results["llm_blender"], rounds["ours"],
                                                rounds["llm_blender"], part)["total"] for part in ("inference", "training")},
        "ratio_checks": {part: ratios(results["ours"], results["llm_blender"], rounds["ours"], rounds["llm_blender"], part)
                         for part in ("inference", "training")},
        "goal": "ratio >= 2",
        "results": results,
        "notes": sanity_notes(results, args.threads),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    if "ours_bf16" in results:
        report["ratio_ours_bf16_over_theirs_fp32"] = {
            part: ratios(results["ours_bf16"], results["llm_blender"], rounds["ours_bf16"], rounds["llm_blender"],
                         part)["total"] for part in ("inference", "training")}
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown_table(results))
    print(json.dumps({k: v for k, v in report.items() if k.startswith("ratio") or k == "notes"}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=0, help="first N test inputs (0 = all 69)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every worker")
    parser.add_argument("--infer-batch-size", type=int, default=16, help="pairs per inference forward pass")
    parser.add_argument("--passes", type=int, default=1, help="passes over the test inputs")
    parser.add_argument("--train-batch-size", type=int, default=8, help="pairs per training step")
    parser.add_argument("--train-steps-per-round", type=int, default=3)
    parser.add_argument("--train-rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bf16", action="store_true", help="skip ours with bf16 autocast (our default setting)")
    parser.add_argument("--rebuild-venv", action="store_true", help="recreate .bench/llm-blender-venv")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--worker", choices=("ours", "ours-bf16"), help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(OursBench(json.loads(args.inputs.read_text(encoding="utf-8")), bf16=args.worker == "ours-bf16"))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
