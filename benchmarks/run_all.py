"""Every benchmark in one command (`make bench`): writes benchmarks/results.json and results.md.

Parts, run one at a time, each in its own process (they time the CPU; a part's peak RSS is that
of the largest process it started, read with `os.wait4`):

- `generation_judge`: generation tokens/s per backend and judge comparisons/s
  (runs `bench_generation_judge.py` at a smaller size);
- `pairranker`: PairRanker full-matrix inference and training pairs/s, ours against the
  `llm-blender` package, and the ratio (runs `bench_pairranker.py` on a subset; creates its
  second venv first when it is missing, and times that);
- `pairranker_device`: our PairRanker on the GPU in bf16 with larger batches, and the training
  MFU against the GPU's bf16 peak (runs by itself only when CUDA is present; `--only
  pairranker_device` runs the same code on the CPU);
- `router`: ZOOTER router queries/s (a router chapter 5 trained, from the cache; else a small
  one trained here, and the output says so);
- `fuser`: GenFuser (untrained: speed does not depend on training) generated tokens/s;
- `chapters`: each chapter executed once by the runner into a temporary folder (never in
  place) with the warm cache: seconds per chapter from the runner's own record, the sum, and
  which chapters wrote to the cache (had to train or compute).

Run: `.venv/bin/python benchmarks/run_all.py [--quick] [--skip-chapters] [--only PART[,PART]]`
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTS = ("generation_judge", "pairranker", "pairranker_device", "router", "fuser", "chapters")
GPU_ONLY_BY_DEFAULT = ("pairranker_device",)

# Sizes: `full` is planned for `make bench` under 20 minutes on 2 CPU cores (chapters dominate);
# `quick` is for tests; `gpu` overrides `full` when CUDA is present (larger batches).
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "generation_judge": {"prompts": 16, "served_prompts": 4, "max_new_tokens": 48, "batch_size": 16},
        "pairranker": {"examples": 4, "train_rounds": 2, "train_steps_per_round": 2, "train_batch_size": 8,
                       "infer_batch_size": 16, "bf16": False},
        "pairranker_device": {"examples": 8, "infer_batch_size": 16, "train_batch_size": 8,
                              "train_steps_per_round": 2, "train_rounds": 2},
        "router": {"queries": 413, "rounds": 2, "single_queries": 16, "train_examples": 64, "val_examples": 16},
        "fuser": {"items": 8, "max_new_tokens": 48, "batch_size": 8},
        "chapters": {"chapters": []},  # [] = every chapter
    },
    "quick": {
        "generation_judge": {"prompts": 4, "served_prompts": 2, "max_new_tokens": 8, "batch_size": 4},
        "pairranker": {"examples": 1, "train_rounds": 1, "train_steps_per_round": 1, "train_batch_size": 4,
                       "infer_batch_size": 8, "bf16": False},
        "pairranker_device": {"examples": 1, "infer_batch_size": 8, "train_batch_size": 4,
                              "train_steps_per_round": 1, "train_rounds": 1},
        "router": {"queries": 32, "rounds": 1, "single_queries": 2, "train_examples": 16, "val_examples": 8},
        "fuser": {"items": 2, "max_new_tokens": 8, "batch_size": 2},
        "chapters": {"chapters": ["02"]},
    },
    "gpu": {
        "generation_judge": {"prompts": 128, "served_prompts": 16, "max_new_tokens": 64, "batch_size": 64},
        "pairranker_device": {"examples": 0, "infer_batch_size": 256, "train_batch_size": 64,
                              "train_steps_per_round": 10, "train_rounds": 3},
        "router": {"queries": 413, "rounds": 5, "single_queries": 32, "train_examples": 315, "val_examples": 29},
        "fuser": {"items": 64, "max_new_tokens": 64, "batch_size": 32},
    },
}

# Peak dense (no sparsity) bf16 tensor-core TFLOPS from NVIDIA's datasheets, matched against
# torch.cuda.get_device_name() in order (the first pattern that matches wins).
PEAK_BF16_DENSE_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"H100.*PCIe", 756.0),
    (r"H100.*NVL", 835.0),
    (r"H200.*NVL", 835.0),
    (r"H100|H200", 989.4),  # SXM ("NVIDIA H100 80GB HBM3", "NVIDIA H200"), GH200
    (r"A100", 312.0),
    (r"L40S", 366.0),
    (r"\bL4\b", 121.0),
)


# --------------------------------------------------------------------------------------------
# FLOPs and MFU


def peak_bf16_tflops(device_name: str | None) -> float | None:
    """The GPU's peak dense bf16 TFLOPS from the table, or None (a CPU, or a GPU not in it)."""
    if not device_name:
        return None
    for pattern, tflops in PEAK_BF16_DENSE_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return tflops
    return None


def training_flops(parameters: int, tokens: float) -> float:
    """Model FLOPs of training on `tokens` tokens: 6 x parameters x tokens (forward 2, backward 4)."""
    if parameters < 0 or tokens < 0:
        raise ValueError(f"parameters and tokens must be >= 0, got {parameters}, {tokens}")
    return 6.0 * parameters * tokens


def mfu(parameters: int, tokens_per_second: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak (None without a peak)."""
    if not peak_tflops:
        return None
    return training_flops(parameters, tokens_per_second) / (peak_tflops * 1e12)


def flops_figures(parameters: int, tokens_per_second: float, device_name: str | None) -> dict[str, Any]:
    peak = peak_bf16_tflops(device_name)
    value = mfu(parameters, tokens_per_second, peak)
    return {"flops_parameters": parameters, "tokens_per_second": round(tokens_per_second, 1),
            "model_tflops_per_second": round(training_flops(parameters, tokens_per_second) / 1e12, 4),
            "peak_bf16_dense_tflops": peak, "mfu": None if value is None else round(value, 5),
            "mfu_note": "6 x non-embedding parameters x real (non-padding) tokens per second, over the peak"
                        if peak else f"no bf16 peak in the table for {device_name or 'a CPU'}"}


# --------------------------------------------------------------------------------------------
# processes, machine, cache


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_measured(command: list[str], *, env: dict[str, str] | None = None, echo: bool = True) -> dict[str, Any]:
    """Run a command to its end; its exit code, wall seconds, the peak RSS of its largest
    process (itself or a descendant it waited for: `os.wait4`) and the tail of its output."""
    print(f"[bench] $ {' '.join(command)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace")
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        if echo:
            sys.stderr.write("    " + line)
        tail = (tail + [line.rstrip()])[-30:]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"returncode": process.returncode, "seconds": round(time.perf_counter() - start, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "output_tail": tail}


def machine_info() -> dict[str, Any]:
    import torch

    from blender_lib.runner import environment_versions

    env = environment_versions()
    info: dict[str, Any] = {"cpu_model": env["cpu"], "cpu_capability": env["cpu_capability"], "cpu_count": os.cpu_count(),
                            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    try:
        kib = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        info["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": torch.cuda.get_device_name(0), "memory_gib": round(props.total_memory / 2**30, 1),
                       "count": torch.cuda.device_count(), "cuda": torch.version.cuda,
                       "bf16_supported": torch.cuda.is_bf16_supported(),
                       "peak_bf16_dense_tflops": peak_bf16_tflops(torch.cuda.get_device_name(0))}
    else:
        info["gpu"] = None
    info.update({k: env[k] for k in ("python", "platform", "git_commit", "packages")})
    return info


def cache_snapshot(root: Path) -> dict[str, int]:
    """Entries one and two levels under the cache root, with their mtimes (logs, locks and
    hidden entries left out): what a chapter that trains or computes something new writes."""
    out: dict[str, int] = {}
    if not root.is_dir():
        return out
    for path in [*root.iterdir(), *(p for d in root.iterdir() if d.is_dir() for p in d.iterdir())]:
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix in (".log", ".lock"):
            continue
        try:
            out[str(rel)] = path.stat().st_mtime_ns
        except OSError:
            continue
    return out


def cache_written(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """New or updated cache entries, the deepest ones only (a new `kind/entry` also touches `kind`)."""
    changed = sorted(k for k, v in after.items() if before.get(k) != v)
    return [k for k in changed if not any(other.startswith(k + "/") for other in changed)]


def figure(part: str, name: str, value: Any, unit: str, *, device: str | None = None, dtype: str | None = None,
           note: str = "") -> dict[str, Any]:
    return {"part": part, "figure": name, "value": value, "unit": unit, "device": device, "dtype": dtype,
            "note": note}


def worker_command(part: str, settings: dict[str, Any], out: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", part, "--worker-settings",
            json.dumps(settings), "--worker-out", str(out)]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------------------------
# parts (run in this process; each starts its own measured process)


def part_generation_judge(s: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = work / "generation_judge.json"
    run = run_measured([sys.executable, str(HERE / "bench_generation_judge.py"), "--prompts", str(s["prompts"]),
                        "--served-prompts", str(s["served_prompts"]), "--max-new-tokens", str(s["max_new_tokens"]),
                        "--batch-size", str(s["batch_size"]), "--out", str(out)])
    if run["returncode"] != 0:
        return {"status": "failed", "error": "\n".join(run["output_tail"][-8:]), "process": run}
    data = json.loads(out.read_text())
    dev, dtype = data.get("device"), data.get("dtype")
    gen, judge = data["generation"], data["judge"]
    figures = [
        figure("generation_judge", f"generation, local transformers, batch {gen['transformers_local']['batch_size']}",
               gen["transformers_local"]["tokens_per_second"], "tokens/s", device=dev, dtype=dtype,
               note=f"{data['model']}, {gen['transformers_local']['prompts']} prompts"),
        figure("generation_judge", "generation, OpenAI client -> local `transformers serve`, 4 concurrent",
               gen["openai_client_local_server"]["tokens_per_second"], "tokens/s", device=dev, dtype=dtype,
               note=f"{gen['openai_client_local_server']['prompts']} prompts"),
        figure("generation_judge", "judge, log-probability (in process)",
               judge["logprob_in_process"]["comparisons_per_second"], "comparisons/s", device=dev, dtype=dtype),
        figure("generation_judge", "judge, served (OpenAI client)",
               judge["served_openai_client"]["comparisons_per_second"], "comparisons/s", device=dev, dtype=dtype,
               note=f"{judge['served_openai_client']['unparseable']} of "
                    f"{judge['served_openai_client']['comparisons']} replies unparseable"),
    ]
    return {"status": "ok", "figures": figures, "peak_rss_mib": run["peak_rss_mib"], "process": run,
            "detail": data}


def part_pairranker(s: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(HERE))
    import bench_pairranker as bp

    venv_python = bp._venv_python(bp.VENV)
    state = "reused" if bp._venv_works(venv_python, torch.__version__) else "created"
    start = time.perf_counter()
    try:
        bp.ensure_llm_blender_venv(torch.__version__)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as err:
        return {"status": "skipped", "reason": f"the llm-blender venv ({bp.VENV.relative_to(ROOT)}) could not be "
                                               f"built: {err}; the comparison needs pip access to llm-blender 0.0.2 "
                                               f"and a CPU torch build of our version"}
    venv = {"path": str(bp.VENV.relative_to(ROOT)), "state": state,
            "seconds": round(time.perf_counter() - start, 1)}
    out = work / "pairranker.json"
    command = [sys.executable, str(HERE / "bench_pairranker.py"), "--examples", str(s["examples"]),
               "--train-rounds", str(s["train_rounds"]), "--train-steps-per-round", str(s["train_steps_per_round"]),
               "--train-batch-size", str(s["train_batch_size"]), "--infer-batch-size", str(s["infer_batch_size"]),
               "--out", str(out)]
    run = run_measured(command + ([] if s["bf16"] else ["--no-bf16"]))
    if run["returncode"] != 0:
        return {"status": "failed", "error": "\n".join(run["output_tail"][-8:]), "process": run, "venv": venv}
    data = json.loads(out.read_text())
    results, ratio = data["results"], data["ratio_ours_over_theirs"]
    n_inf, n_train = results["ours"]["inference"]["pairs"], results["ours"]["training"]["pairs"]
    figures = []
    for name, r in results.items():
        dev, dtype = r.get("device", "cpu"), "bf16 autocast" if "bf16" in r["compute"] else "fp32"
        figures.append(figure("pairranker", f"PairRanker inference, {name}", r["inference"]["pairs_per_second"],
                              "pairs/s", device=dev, dtype=dtype,
                              note=f"{n_inf} ordered pairs; worker peak RSS {r['peak_rss_mib']['end']} MiB"))
        figures.append(figure("pairranker", f"PairRanker training, {name}", r["training"]["pairs_per_second"],
                              "pairs/s", device=dev, dtype=dtype, note=f"{n_train} pairs, batch {s['train_batch_size']}"))
    figures += [figure("pairranker", f"ratio ours / llm-blender, {part}", ratio[part], "x", device="cpu",
                       dtype="fp32", note=f"per-round geometric mean {data['ratio_checks'][part]['per_round_geometric_mean']}")
                for part in ("inference", "training")]
    flops = {}
    for name in [n for n in results if n.startswith("ours")]:
        tr = results[name]["training"]
        params = results[name].get("non_embedding_parameters") or results[name]["parameters"]
        flops[name] = flops_figures(params, tr["pairs_per_second"] * tr["real_tokens_per_pair_run"] *
                                    tr["model_pairs_run"] / max(tr["pairs"], 1), None)
        figures.append(figure("pairranker", f"PairRanker training model FLOP/s, {name}",
                              flops[name]["model_tflops_per_second"], "TFLOP/s", device="cpu",
                              dtype="bf16 autocast" if "bf16" in name else "fp32",
                              note="6 x non-embedding parameters x real tokens/s; no CPU peak, so no MFU"))
    return {"status": "ok", "figures": figures, "peak_rss_mib": run["peak_rss_mib"], "process": run, "venv": venv,
            "training_flops": flops, "detail": data}


def _worker_part(part: str, s: dict[str, Any], work: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    out = work / f"{part}.json"
    run = run_measured(worker_command(part, s, out))
    if run["returncode"] != 0 or not out.exists():
        return None, run
    return json.loads(out.read_text()), run


def part_pairranker_device(s: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    data, run = _worker_part("pairranker_device", s, work)
    if data is None:
        return {"status": "failed", "error": "\n".join(run["output_tail"][-8:]), "process": run}
    dev, inf, tr, fl = data["device"], data["inference"], data["training"], data["training_flops"]
    figures = [
        figure("pairranker_device", "PairRanker inference, ours", inf["pairs_per_second"], "pairs/s", device=dev,
               dtype="bf16 autocast", note=f"{inf['pairs']} pairs, batch {s['infer_batch_size']}"),
        figure("pairranker_device", "PairRanker training, ours", tr["pairs_per_second"], "pairs/s", device=dev,
               dtype="bf16 autocast", note=f"{tr['pairs']} pairs, batch {s['train_batch_size']}"),
        figure("pairranker_device", "PairRanker training model FLOP/s", fl["model_tflops_per_second"], "TFLOP/s",
               device=dev, dtype="bf16 autocast", note=f"{fl['tokens_per_second']} real tokens/s"),
        figure("pairranker_device", "PairRanker training MFU", fl["mfu"], "fraction of peak", device=dev,
               dtype="bf16 autocast", note=fl["mfu_note"] + (f" ({fl['peak_bf16_dense_tflops']} TFLOPS)"
                                                           if fl["peak_bf16_dense_tflops"] else "")),
    ]
    return {"status": "ok", "figures": figures, "peak_rss_mib": run["peak_rss_mib"], "process": run, "detail": data}


def part_router(s: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    data, run = _worker_part("router", s, work)
    if data is None:
        return {"status": "failed", "error": "\n".join(run["output_tail"][-8:]), "process": run}
    dev, dtype = data["device"], data["dtype"]
    origin = data["router"]["origin"]
    figures = [
        figure("router", f"ZOOTER router, batch {data['batch_size']}", data["batched"]["queries_per_second"],
               "queries/s", device=dev, dtype=dtype, note=f"{data['batched']['queries']} distinct queries; {origin}"),
        figure("router", "ZOOTER router, one query at a time", data["single"]["queries_per_second"], "queries/s",
               device=dev, dtype=dtype, note=f"{data['single']['queries']} queries"),
    ]
    return {"status": "ok", "figures": figures, "peak_rss_mib": run["peak_rss_mib"], "process": run, "detail": data}


def part_fuser(s: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    data, run = _worker_part("fuser", s, work)
    if data is None:
        return {"status": "failed", "error": "\n".join(run["output_tail"][-8:]), "process": run}
    figures = [figure("fuser", f"GenFuser generation (untrained), batch {s['batch_size']}", data["tokens_per_second"],
                      "tokens/s", device=data["device"], dtype=data["dtype"],
                      note=f"{data['model']}, {data['items']} inputs of top-{data['top_k']}, "
                           f"~{data['mean_prompt_tokens']} prompt tokens")]
    return {"status": "ok", "figures": figures, "peak_rss_mib": run["peak_rss_mib"], "process": run, "detail": data}


def part_chapters(s: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from blender_lib.paths import cache_dir
    from blender_lib.runner import select_chapters

    chapters = select_chapters(args.chapters or s["chapters"])
    cache = cache_dir()
    entries_before = len(cache_snapshot(cache))
    warm = entries_before > 0
    out = Path(tempfile.mkdtemp(prefix="blender-bench-book-"))
    rows = []
    try:
        for path in chapters:
            before = cache_snapshot(cache)
            (out / "run.json").unlink(missing_ok=True)
            run = run_measured([sys.executable, "-m", "blender_lib.cli", "run", path.stem, "--out", str(out)])
            record = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else None
            entry = record["chapters"][0] if record else {}
            written = cache_written(before, cache_snapshot(cache))
            rows.append({"chapter": path.stem, "seconds": entry.get("seconds"),
                         "status": entry.get("status", "failed" if run["returncode"] else "unknown"),
                         "error": entry.get("error") or (None if run["returncode"] == 0 else
                                                         "\n".join(run["output_tail"][-5:])),
                         "process_seconds": run["seconds"], "peak_rss_mib": run["peak_rss_mib"],
                         "wrote_to_cache": written[:12], "cache_entries_written": len(written)})
    finally:
        if args.keep_chapter_outputs:
            print(f"[bench] executed chapters kept in {out}", file=sys.stderr)
        else:
            shutil.rmtree(out, ignore_errors=True)
    ok = all(r["status"] == "ok" for r in rows)
    total = round(sum(r["seconds"] or 0.0 for r in rows), 1)
    trained = [r["chapter"] for r in rows if r["cache_entries_written"]]
    cache_note = (f"The cache ({cache}) was warm: {entries_before} entries before the run." if warm else
                  f"The cache ({cache}) was empty: the chapters trained and computed everything from scratch.")
    trained_note = (f"Chapters that wrote to the cache (had to train or compute): {', '.join(trained)}." if trained
                    else "No chapter wrote to the cache: everything was loaded.")
    figures = [figure("chapters", f"chapter {r['chapter']}", r["seconds"], "s", note=r["status"]) for r in rows]
    figures.append(figure("chapters", "whole book (sum of chapters)" + ("" if ok else ", INCOMPLETE"), total, "s",
                          note=f"{len(rows)} chapters; cache {'warm' if warm else 'cold'}"))
    return {"status": "ok" if ok else "failed", "figures": figures,
            "peak_rss_mib": max((r["peak_rss_mib"] for r in rows), default=None), "chapters": rows,
            "total_seconds": total, "all_ok": ok, "cache": {"path": str(cache), "warm": warm,
                                                             "entries_before": entries_before},
            "chapters_that_wrote_to_cache": trained, "notes": [cache_note, trained_note],
            "how": "Each chapter was executed once by `python -m blender_lib.cli run CHAPTER --out <temporary "
                   "folder>` (never --inplace), one after another into the same folder; the seconds are the "
                   "runner's own record (run.json), the peak RSS that of the runner and its kernel."}


PART_FUNCTIONS: dict[str, Callable[[dict[str, Any], Path, argparse.Namespace], dict[str, Any]]] = {
    "generation_judge": part_generation_judge, "pairranker": part_pairranker,
    "pairranker_device": part_pairranker_device, "router": part_router, "fuser": part_fuser,
    "chapters": part_chapters,
}


# --------------------------------------------------------------------------------------------
# workers (a fresh process each; write one JSON file)


def _device_and_cuda_memory() -> tuple[str, Callable[[], float | None]]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return "cuda", lambda: round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return "cpu", lambda: None


def worker_pairranker_device(s: dict[str, Any]) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(HERE))
    import bench_pairranker as bp

    device, cuda_peak = _device_and_cuda_memory()
    name = torch.cuda.get_device_name(0) if device == "cuda" else None
    ns = argparse.Namespace(examples=s["examples"], threads=torch.get_num_threads(), passes=1, seed=0,
                            infer_batch_size=s["infer_batch_size"], train_batch_size=s["train_batch_size"],
                            train_steps_per_round=s["train_steps_per_round"], train_rounds=s["train_rounds"])
    inputs = bp.build_inputs(ns)
    bench = bp.OursBench(inputs, bf16=True, device=device)
    bench.warmup_infer()
    infer = [bench.infer(k) for k in range(len(inputs["test_chunks"]))]
    bench.warmup_train()
    train = [bench.train(r) for r in range(s["train_rounds"])]
    info = bench.info()

    def total(rounds: list[dict[str, Any]]) -> dict[str, Any]:
        pairs, seconds = sum(r["pairs"] for r in rounds), sum(r["seconds"] for r in rounds)
        real, padded = sum(r["real_tokens"] for r in rounds), sum(r["padded_tokens"] for r in rounds)
        return {"pairs": pairs, "seconds": round(seconds, 3), "pairs_per_second": round(pairs / seconds, 2),
                "real_tokens": real, "padded_tokens": padded, "real_tokens_per_second": real / seconds}

    inference, training = total(infer), total(train)
    flops = flops_figures(info["non_embedding_parameters"], training["real_tokens_per_second"], name)
    padded_mfu = mfu(info["non_embedding_parameters"], training["padded_tokens"] / training["seconds"],
                     peak_bf16_tflops(name))
    flops["mfu_counting_padding"] = None if padded_mfu is None else round(padded_mfu, 5)
    from blender_lib.runner import cpu_model

    return {"device": device, "device_name": name or cpu_model(), "info": info, "inference": inference,
            "training": training, "training_flops": flops, "losses_finite": all(r["finite_losses"] for r in train),
            "cuda_max_memory_allocated_mib": cuda_peak(), "settings": inputs["settings"]}


def _queries() -> list[str]:
    from blender_lib.examples import source_text
    from blender_lib.mixinstruct import load_build

    splits, _ = load_build()
    return list(dict.fromkeys(source_text(ex) for name in ("train", "val", "test") for ex in splits[name]))


def worker_router(s: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from blender_lib import zooter
    from blender_lib.paths import cache_dir

    device, cuda_peak = _device_and_cuda_memory()
    dtype = "bfloat16" if device == "cuda" else "float32"  # the router's CPU default: fp32 (bf16 no faster there)
    folders = sorted((p for p in cache_dir().glob("zooter/routers/router-*/best") if (p / "baseline.json").exists()),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    scratch = None
    if folders:
        folder, origin = folders[0], f"trained by chapter 5, loaded from the cache ({folders[0].parent.name})"
    else:
        from blender_lib.mixinstruct import load_build

        splits, _ = load_build()
        train, val = splits["train"][: s["train_examples"]], splits["val"][: s["val_examples"]]
        labels = [zooter.reward_labels(zooter.metric_rewards(x, "bertscore")) for x in (train, val)]
        start = time.perf_counter()
        scratch = Path(tempfile.mkdtemp(prefix="bench-router-"))
        report = zooter.train_router(train, val, labels[0], labels[1], zooter.RouterConfig(epochs=1, device=device),
                                     out_dir=scratch, progress=False)
        folder = Path(report.best_dir)
        origin = (f"no router in the cache ({cache_dir()}): a small one trained here ({len(train)} queries, 1 epoch, "
                  f"{time.perf_counter() - start:.0f} s; speed does not depend on training)")
    router = zooter.RouterModel.from_pretrained(folder, device=device, dtype=dtype)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    queries = _queries()[: s["queries"]]
    batch_size = router.config.eval_batch_size
    router.route(queries[:batch_size])  # warm-up
    start = time.perf_counter()
    for _ in range(s["rounds"]):
        routed = router.route(queries, batch_size=batch_size)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for q in queries[: s["single_queries"]]:
        router.route_one(q)
    single = time.perf_counter() - start
    return {"device": str(router.device), "dtype": dtype, "threads": torch.get_num_threads(), "batch_size": batch_size,
            "router": {"folder": str(folder), "origin": origin, "models": list(router.models),
                       "parameters": router.num_parameters()},
            "batched": {"queries": len(queries), "rounds": s["rounds"], "seconds": round(batched, 3),
                        "queries_per_second": round(s["rounds"] * len(queries) / batched, 1)},
            "single": {"queries": s["single_queries"], "seconds": round(single, 3),
                       "queries_per_second": round(s["single_queries"] / single, 1)},
            "routed_to": {m: int(c) for m, c in zip(*np.unique(routed, return_counts=True))},
            "cuda_max_memory_allocated_mib": cuda_peak()}


def worker_fuser(s: dict[str, Any]) -> dict[str, Any]:
    import torch

    from blender_lib.fuser import FuserConfig, GenFuser, random_items
    from blender_lib.mixinstruct import load_build

    device, cuda_peak = _device_and_cuda_memory()
    config = FuserConfig()
    start = time.perf_counter()
    fuser = GenFuser.from_model(config, dtype="bfloat16")
    load_seconds = time.perf_counter() - start
    splits, _ = load_build()
    items = random_items(splits["test"][: s["items"]], config.top_k, seed=0)
    fuser.fuse(items[: s["batch_size"]], max_new_tokens=2, batch_size=s["batch_size"])  # warm-up: the first batch's shapes
    start = time.perf_counter()
    fused = fuser.fuse(items, max_new_tokens=s["max_new_tokens"], batch_size=s["batch_size"])
    seconds = time.perf_counter() - start
    tokens = sum(f.n_tokens for f in fused)
    prompt_tokens = [len(fuser.tokenizer.encode(fuser.prompt(it), add_special_tokens=False)) for it in items]
    return {"device": str(fuser.loaded.device), "dtype": str(fuser.loaded.dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(), "model": config.model, "trained": False, "top_k": config.top_k,
            "items": len(items), "batch_size": s["batch_size"], "max_new_tokens": s["max_new_tokens"],
            "mean_prompt_tokens": round(sum(prompt_tokens) / len(prompt_tokens)), "generated_tokens": tokens,
            "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 1),
            "load_seconds": round(load_seconds, 2), "cuda_max_memory_allocated_mib": cuda_peak()}


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "pairranker_device": worker_pairranker_device, "router": worker_router, "fuser": worker_fuser}


# --------------------------------------------------------------------------------------------
# report


def _value(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 0.01 else f"{v:,.2f}".rstrip("0").rstrip(".")
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    gpu = m.get("gpu")
    lines = [
        "# Benchmarks", "",
        f"`{report['command']}` ({report['mode']} sizes), {report['started']} to {report['finished']}, "
        f"{report['total_seconds'] / 60:.1f} minutes in all.", "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} cores, {m.get('memory_gib', '?')} GiB, torch {m['torch']} with "
        f"{m['torch_threads']} threads; GPU: {gpu['name'] + ' (' + str(gpu['memory_gib']) + ' GiB)' if gpu else 'none'}. "
        f"Load average (1/5/15 min) before {report['load_average_before']}, after {report['load_average_after']}.",
    ]
    parts = report["parts"]
    throughput = [f for f in report["figures"] if f["part"] != "chapters"]
    if throughput:
        lines += ["", "## Throughput", "", "| part | figure | value | unit | device, dtype | part peak RSS MiB | note |",
                  "|---|---|---:|---|---|---:|---|"]
    for f in throughput:
        dev = ", ".join(x for x in (f["device"], f["dtype"]) if x) or "–"
        lines.append(f"| {f['part']} | {f['figure']} | {_value(f['value'])} | {f['unit']} | {dev} | "
                     f"{_value(parts[f['part']].get('peak_rss_mib'))} | {f['note']} |")
    chapters = parts.get("chapters")
    if chapters and chapters.get("chapters"):
        lines += ["", "## Chapters", "", " ".join([chapters["how"], *chapters["notes"]]), "",
                  "| chapter | seconds (runner record) | status | wrote to the cache | peak RSS MiB |",
                  "|---|---:|---|---|---:|"]
        for r in chapters["chapters"]:
            wrote = ", ".join(f"`{w}`" for w in r["wrote_to_cache"][:3]) + (" …" if r["cache_entries_written"] > 3
                                                                            else "")
            lines.append(f"| {r['chapter']} | {_value(r['seconds'])} | {r['status']} | {wrote or 'nothing'} | "
                         f"{_value(r['peak_rss_mib'])} |")
        lines.append(f"| **whole book** | **{_value(chapters['total_seconds'])}** "
                     f"({chapters['total_seconds'] / 60:.1f} min) | {'ok' if chapters['all_ok'] else 'INCOMPLETE'} | | |")
    other = [(name, p) for name, p in parts.items() if p["status"] != "ok"]
    notes = [f"**{name}** {p['status']}: {p.get('reason') or p.get('error')}" for name, p in other]
    pr = parts.get("pairranker", {})
    if pr.get("venv"):
        notes.append(f"llm-blender venv ({pr['venv']['path']}): {pr['venv']['state']} in {pr['venv']['seconds']} s.")
    notes += report.get("notes", [])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def select_parts(only: list[str], skip_chapters: bool, has_cuda: bool) -> list[str]:
    chosen = [p.strip() for item in only for p in item.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise SystemExit(f"run_all.py: unknown part(s) {unknown}; parts are: {', '.join(PARTS)}")
    if skip_chapters and "chapters" in chosen:
        raise SystemExit("run_all.py: --skip-chapters and --only chapters contradict each other")
    parts = [p for p in PARTS if p in chosen] if chosen else \
        [p for p in PARTS if has_cuda or p not in GPU_ONLY_BY_DEFAULT]
    return [p for p in parts if not (skip_chapters and p == "chapters")]


def sizes_for(quick: bool, has_cuda: bool) -> dict[str, dict[str, Any]]:
    sizes = {k: dict(v) for k, v in SIZES["quick" if quick else "full"].items()}
    if has_cuda and not quick:
        for part, override in SIZES["gpu"].items():
            sizes[part].update(override)
    return sizes


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["figures"] = [f for p in report["parts"].values() for f in p.get("figures", [])]
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    if "finished" in report:
        (out_dir / "results.md").write_text(markdown(report), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a test); only chapter 02 unless --chapters")
    parser.add_argument("--skip-chapters", action="store_true", help="leave out the chapter execution part")
    parser.add_argument("--only", action="append", default=[], metavar="PART[,PART]",
                        help=f"run only these parts (repeatable): {', '.join(PARTS)}")
    parser.add_argument("--chapters", nargs="+", default=None, metavar="CHAPTER",
                        help="chapters to execute (stems or numbers; default all, or 02 with --quick)")
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where results.json and results.md go")
    parser.add_argument("--keep-chapter-outputs", action="store_true", help="keep the executed chapters' folder")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-settings", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"), ("PYTHONHASHSEED", "0"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")):
        os.environ.setdefault(key, value)

    if args.worker:
        from blender_lib.notebook import quiet_libraries

        quiet_libraries()
        result = WORKERS[args.worker](json.loads(args.worker_settings))
        args.worker_out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        return 0

    has_cuda = cuda_available()
    parts = select_parts(args.only, args.skip_chapters, has_cuda)
    sizes = sizes_for(args.quick, has_cuda)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "what": "Blender Book benchmarks (benchmarks/run_all.py); see benchmarks/README.md for each figure",
        "command": " ".join(["benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])]),
        "mode": "quick" if args.quick else "full", "started": now(), "load_average_before": load_average(),
        "machine": machine_info(), "parts_run": parts, "sizes": {p: sizes[p] for p in parts}, "parts": {},
        "notes": [] if has_cuda else ["no GPU: everything ran on the CPU; the GPU paths (bf16, device placement, "
                                      "MFU) run when torch.cuda.is_available()"],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="blender-bench-") as tmp:
        for part in parts:
            print(f"[bench] === {part} ===", file=sys.stderr, flush=True)
            meta = {"started": now(), "load_average_before": load_average()}
            start = time.perf_counter()
            try:
                out = PART_FUNCTIONS[part](sizes[part], Path(tmp), args)
            except Exception as err:  # a broken part is reported; the others still run
                out = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                       "traceback": traceback.format_exc()}
            out.update({**meta, "finished": now(), "seconds": round(time.perf_counter() - start, 1),
                        "load_average_after": load_average()})
            failed |= out["status"] == "failed"
            report["parts"][part] = out
            print(f"[bench] {part}: {out['status']} in {out['seconds']} s"
                  + (f" ({out.get('reason') or out.get('error')})" if out["status"] != "ok" else ""),
                  file=sys.stderr, flush=True)
            write_report(report, args.out_dir)  # a partial report survives an interruption
    report.update({"finished": now(), "total_seconds": round(time.perf_counter() - started, 1),
                   "load_average_after": load_average()})
    write_report(report, args.out_dir)
    print((args.out_dir / "results.md").read_text(encoding="utf-8"))
    print(f"[bench] wrote {args.out_dir / 'results.json'} and results.md", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
