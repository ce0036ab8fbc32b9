"""A tiny MixInstruct in the published hub's exact layout, for the published-data tests."""

from __future__ import annotations

import random
from pathlib import Path

from blender_lib import mixinstruct as MI

MODELS = ["vicuna-13b-1.1", "oasst-sft-4-pythia-12b-epoch-3.5", "alpaca-native", "koala-7B-HF", "dolly-v2-12b"]
SOURCES = ["alpaca_gpt4", "dolly_15k", "unified_chip2", "laion"]
WORDS = ("river stone light garden music winter paper engine market forest signal bridge letter "
         "window harbor planet orange silver question answer").split()


def tiny_mixinstruct(folder: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """A MixInstruct in the hub's layout: five published model names whose answers copy more or less of
    the reference (the earlier model, the more), ChatGPT-style verdicts on the test split."""
    rng = random.Random(seed)
    splits: dict[str, list[dict]] = {}
    for split, size in sizes.items():
        splits[split] = []
        for k in range(size):
            reference = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16)))
            candidates, kept = [], {}
            for rank, model in enumerate(MODELS):
                share = max(0.1, 0.9 - 0.18 * rank + rng.uniform(-0.2, 0.2))
                text = " ".join(w if rng.random() < share else rng.choice(WORDS) for w in reference.split())
                kept[model] = share
                candidates.append({"model": model, "decoding_method": "top_p_sampling", "text": text,
                                   "scores": {"logprobs": -rng.uniform(1, 5), "bleu": 100 * share, "rougeL": share,
                                              "bertscore": 0.5 + share / 2, "bartscore": -4 + share}})
            cmp = {}
            if split == "test":
                for i, a in enumerate(MODELS):
                    for b in MODELS[i + 1:]:
                        gap = kept[a] - kept[b]
                        cmp[f"{a},{b}"] = ("A is better" if gap > 0.1 else "B is better" if gap < -0.1
                                           else "Same good" if kept[a] > 0.5 else "Same bad")
            source = SOURCES[k % len(SOURCES)]
            splits[split].append({"id": f"{source}/{split}{k}", "instruction": f"Write about {reference.split()[0]}.",
                                  "input": "" if k % 2 else f"Context {k}.", "output": reference,
                                  "candidates": candidates, "cmp_results": cmp})
    return MI.write_published(splits, folder)
