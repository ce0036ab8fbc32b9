"""Which frozen backbone and window should chapter 6's reward model and PairRanker head read?

Issue 18 asks for candidate windows that cover typical answers, measured against 128 tokens, and for
the backbone to be chosen between MiniLM-L6 (mean-pooled encoder) and a decoder (SmolLM2-135M,
last-token pooling), with the throughput of each. Embedding every text of chapter 6 with each variant
takes longer than the chapter's budget (SmolLM2 about 7x MiniLM), so this benchmark runs the
chapter's own protocol (``reward_model.cross_validate_reward_model`` and
``frozen_heads.cross_validate_pair_head``, two folds by prompt) on a seeded third of the prompts:
every preference on those prompts (any source) and the MixInstruct-era pool's examples on them.

Per variant it records: the share of answers longer than the window (in that model's tokens),
embedding texts/s (on a fixed sample of 256 texts, timed directly, so a warm cache does not hide it),
head training pairs/s, held-out pairwise accuracy, and the held-out top-1 win rate of RMR (our reward
model) and the PairRanker head (bubble) against the reference, with the best single model's beside.

Run: ``.venv/bin/python benchmarks/bench_reward_backbones.py [--out benchmarks/reward_backbones.json]``
(38 minutes measured on 2 cores with chapter 6's MiniLM-256 embeddings cached; 27 of them embedding
with SmolLM2).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from blender_lib import analysis, frozen_heads, preferences, reward_model
from blender_lib import real_data as rd
from blender_lib.cross_validation import best_single_selections
from blender_lib.models import token_lengths

ERA_POOL = ["alpaca-7b", "vicuna-13b", "falcon-40b-instruct", "guanaco-65b", "llama-2-7b-chat-hf", "oasst-rlhf-llama-33b",
            "wizardlm-13b", "alpaca-farm-ppo-human", "phi-2"]  # chapter 6's reward_pool
VARIANTS = [("minilm-l6", 128), ("minilm-l6", 256), ("minilm-l6", 512), ("smollm2-135m-instruct", 256)]
SUBSET = (3, 0)  # prompts whose prompt_fold(key, 3, SEED + 77) is 0: a seeded third
SEED = 0


def in_subset(key: str) -> bool:
    return preferences.prompt_fold(key, SUBSET[0], SEED + 77) == SUBSET[1]


def window_coverage(encoder: str, max_length: int, answers: list[str]) -> dict[str, float]:
    lengths = np.array(token_lengths(answers, encoder))
    return {"median answer tokens": float(np.median(lengths)), "answers longer than the window %": float(100 * (lengths > max_length).mean())}


def run_variant(encoder: str, max_length: int, pool: list[dict], prefs: list, sample: list[str]) -> dict:
    embed = reward_model.encoder_embedder(encoder, max_length)
    embed(sample[:8])  # load the model outside the timing
    start = time.perf_counter()
    embed(sample)
    texts_per_second = len(sample) / (time.perf_counter() - start)
    cache = reward_model.EmbeddingCache.open(encoder, max_length)
    start = time.perf_counter()
    embedded = reward_model.embed_missing(cache, reward_model.texts_to_embed(pool, prefs), embed)
    embed_seconds = time.perf_counter() - start
    rm = reward_model.cross_validate_reward_model(pool, prefs, cache, folds=2, seed=SEED, score_key=rd.PREF_SCORE,
                                                  features="text+model+length")
    pair = frozen_heads.cross_validate_pair_head(pool, prefs, cache, features=rm.features, folds=2, seed=SEED)
    fold_of = {ex["id"]: reward_model.example_fold(ex, 2, SEED) for ex in pool}
    best, _ = best_single_selections(pool, fold_of)
    return {
        "encoder": encoder, "max_length": max_length,
        **window_coverage(encoder, max_length, [c["text"] for ex in pool for c in ex["candidates"]]),
        "embedding texts/s": texts_per_second, "texts embedded now": embedded, "embedding seconds": embed_seconds,
        "head training pairs/s": float(np.mean([r.rows_per_second for r in pair.reports.values()])),
        "reward model held-out pairwise accuracy %": 100 * float(np.mean([c[-1]["held-out pairwise accuracy"] for c in rm.curves.values()])),
        "PairRanker head held-out pairwise accuracy %": 100 * float(np.mean([r.curve[-1]["held-out"] for r in pair.reports.values()])),
        "RMR win rate %": analysis.win_rate_vs_reference(pool, [int(np.argmax(s)) for s in rm.scores]),
        "PairRanker head (bubble) win rate %": analysis.win_rate_vs_reference(pool, pair.bubble_selections),
        "best single win rate %": analysis.win_rate_vs_reference(pool, best),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("reward_backbones.json")))
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    root = rd.data_root(args.data_root)
    prefs = [p for p in preferences.all_preferences(root) if in_subset(p.prompt_key)]
    pool = [ex for ex in rd.load_alpaca_eval(root, ERA_POOL) if in_subset(preferences.prompt_key(ex["instruction"]))]
    answers = sorted({c["text"] for ex in pool for c in ex["candidates"]})
    sample = [answers[k] for k in np.random.default_rng(SEED).choice(len(answers), size=256, replace=False)]
    rows = []
    for encoder, max_length in VARIANTS:
        start = time.perf_counter()
        rows.append({**run_variant(encoder, max_length, pool, prefs, sample), "variant seconds": time.perf_counter() - start})
        print(json.dumps(rows[-1]), flush=True)
    out = {"prompts": len(pool), "preferences": len(prefs), "decisive": len(preferences.decisive(prefs)),
           "subset": f"prompt_fold(key, {SUBSET[0]}, {SEED + 77}) == {SUBSET[1]}", "pool": ERA_POOL,
           "machine": {"processor": platform.processor() or platform.machine(), "cpus": __import__("os").cpu_count()},
           "variants": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
