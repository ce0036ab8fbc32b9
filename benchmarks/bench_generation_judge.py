"""Generation tokens/s and judge comparisons/s per backend, with peak memory.

Backends: local transformers (batched) and the OpenAI-compatible client against a real
`transformers serve` process on 127.0.0.1; judges: in-process log-probability and served.
Writes benchmarks/generation_judge.json. Run: `.venv/bin/python benchmarks/bench_generation_judge.py`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from blender_lib.generate import CandidateConfig, OpenAIBackend, TransformersBackend, build_prompt, user_message
from blender_lib.judge import LocalJudgeServer, LogProbJudge, OpenAIJudge, judge_prompt
from blender_lib.data import load_seed_instructions
from blender_lib.models import load_model, resolve_model_path
from blender_lib.notebook import quiet_libraries

OUT = Path(__file__).with_name("generation_judge.json")


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--served-prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    quiet_libraries()

    seeds = load_seed_instructions()[:: max(1, 420 // args.prompts)][: args.prompts]
    config = CandidateConfig(name="bench", model=args.model, max_new_tokens=args.max_new_tokens)
    loaded = load_model(args.model, dtype=args.dtype)
    backend = TransformersBackend(loaded)
    prompts = [build_prompt(loaded.tokenizer, config, ex["instruction"], ex["input"]) for ex in seeds]
    backend.generate(prompts[:2], config)  # warm-up (kernel selection)
    outputs, seconds = timed(lambda: [g for s in range(0, len(prompts), args.batch_size)
                                      for g in backend.generate(prompts[s : s + args.batch_size], config)])
    local_tokens = sum(g.n_tokens for g in outputs)

    judge_prompts = [judge_prompt(ex["instruction"], ex["input"], a.text, b.text)
                     for ex, a, b in zip(seeds, outputs, outputs[1:] + outputs[:1])]
    logprob = LogProbJudge(loaded, batch_size=8)
    _, judge_seconds = timed(lambda: logprob.judge(judge_prompts))

    folder, _ = resolve_model_path(args.model)
    with LocalJudgeServer(folder, dtype=args.dtype) as server:
        remote = OpenAIBackend(base_url=server.base_url, max_concurrency=4)
        served_config = CandidateConfig(name="bench", model=folder, max_new_tokens=args.max_new_tokens)
        messages = [user_message(ex["instruction"], ex["input"]) for ex in seeds[: args.served_prompts]]
        remote.generate(messages[:1], served_config)  # warm-up: the server loads the model on first use
        served, served_seconds = timed(lambda: remote.generate(messages, served_config))
        served_judge = OpenAIJudge(folder, base_url=server.base_url, max_tokens=8, max_concurrency=4)
        verdicts, served_judge_seconds = timed(lambda: served_judge.judge(judge_prompts[: args.served_prompts]))

    result = {
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "model": args.model, "dtype": args.dtype, "device": str(loaded.device), "max_new_tokens": args.max_new_tokens,
        "generation": {
            "transformers_local": {"prompts": len(prompts), "batch_size": args.batch_size, "tokens": local_tokens,
                                   "seconds": round(seconds, 2), "tokens_per_second": round(local_tokens / seconds, 1)},
            "openai_client_local_server": {"prompts": len(messages), "concurrency": 4,
                                           "tokens": sum(g.n_tokens for g in served), "seconds": round(served_seconds, 2),
                                           "tokens_per_second": round(sum(g.n_tokens for g in served) / served_seconds, 1)},
        },
        "judge": {
            "logprob_in_process": {"comparisons": len(judge_prompts), "seconds": round(judge_seconds, 2),
                                   "comparisons_per_second": round(len(judge_prompts) / judge_seconds, 2)},
            "served_openai_client": {"comparisons": len(verdicts), "seconds": round(served_judge_seconds, 2),
                                     "comparisons_per_second": round(len(verdicts) / served_judge_seconds, 2),
                                     "unparseable": sum(v.label is None for v in verdicts)},
        },
        "peak_memory_mib": {"this_process": round(peak_rss_mib(), 1),
                            "server_processes": round(peak_rss_mib(resource.RUSAGE_CHILDREN), 1)},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
