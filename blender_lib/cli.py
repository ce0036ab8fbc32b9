"""The ``blender-book`` command line: run chapters, list them, train PairRanker, fetch chapter 6's data.

``blender-book run [CHAPTERS] --params FILE -p key=value --out runs/NAME``, ``blender-book
chapters``, ``blender-book train pairranker`` and ``blender-book fetch-data``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runner import (KEPT, RunnerError, chapter_values, execute_plan, list_chapters, load_parameter_files, parse_override,
                     plan_run, select_chapters)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blender-book", description="Run Blender Book chapters in batch.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute chapters with papermill")
    run.add_argument("chapters", nargs="*", help="chapter stems or numbers (default: all, in order)")
    run.add_argument("--params", action="append", default=[], metavar="FILE", help="YAML parameter file (repeatable)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")
    target = run.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, help="folder for the executed notebooks, results/ and run.json")
    target.add_argument("--inplace", action="store_true", help="update the stored chapters (what `make book` does)")
    run.add_argument("--dry-run", action="store_true", help="check chapters and parameters, then stop")
    run.add_argument("--log-output", action="store_true", help="stream cell output to the terminal")

    sub.add_parser("chapters", help="list the chapters and the parameters each declares")

    train = sub.add_parser("train", help="train chapter 3's PairRanker into the cache, where chapters 3 and 4 find it; "
                                         "runs under `accelerate launch` for several processes or GPUs")
    train.add_argument("model", choices=["pairranker"])
    train.add_argument("--params", action="append", default=[], metavar="FILE", help="YAML parameter file (repeatable)")
    train.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")

    fetch = sub.add_parser("fetch-data", help="download the public real data chapter 6 reads (resumable, verified)")
    fetch.add_argument("--dest", type=Path, help="target folder (default: <cache>/public-data, where chapter 6 finds it)")
    fetch.add_argument("--dataset", action="append", default=[], metavar="NAME",
                       help="alpaca_eval, flask, llmbar or mt_bench (repeatable; default: all four)")
    fetch.add_argument("--source", action="append", default=[], metavar="NAME=BASE",
                       help="another base URL or a local folder laid out like the upstream repository")
    fetch.add_argument("--if-online", action="store_true",
                       help="do nothing (exit 0) when real data is already found or the network is unreachable")
    fetch.add_argument("--force", action="store_true", help="download and write everything anew")
    return parser


def fetch_data(args: argparse.Namespace) -> int:
    """``blender-book fetch-data``: download, or say in one line why nothing was downloaded."""
    import os

    from .paths import fetched_data_dir

    # Asking to fetch is asking to go online: lift the offline switches `make` sets, for this process only
    # (read by `datasets` and `huggingface_hub` when they are imported, below).
    os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "0"
    from . import real_data_fetch as fetch
    from .real_data import find_data_root

    dest = args.dest or fetched_data_dir()
    datasets = args.dataset or list(fetch.DATASETS)
    sources = dict(parse_source(text) for text in args.source)
    found = find_data_root()
    if args.if_online and found is not None and found != dest:
        print(f"[fetch-data] real data found at {found}: nothing to fetch")
        return 0
    if not args.force and set(datasets) <= set(fetch.complete_datasets(dest)):
        print(f"[fetch-data] {', '.join(datasets)} already in {dest}, sizes and checksums verified")
        return 0
    probe = sources.get(datasets[0], fetch.SOURCES[datasets[0]])
    if args.if_online and not fetch.reachable(probe):
        print(f"[fetch-data] offline ({probe} is unreachable): chapter 6 keeps its stored outputs. Where there is "
              f"a network, run `.venv/bin/blender-book fetch-data`, or set $BLENDER_BOOK_SHARED_DATA")
        return 0
    print(f"[fetch-data] {', '.join(datasets)} into {dest}", flush=True)
    try:
        # Each dataset is recorded in the manifest (sizes, SHA-256) right after it is written.
        fetch.fetch_public_data(dest, datasets, sources=sources, force=args.force,
                                progress=lambda line: print(f"[fetch-data] {line}", flush=True))
    except (fetch.IncompleteDownload, RuntimeError, ValueError, OSError) as err:
        print(f"blender-book: error: {err}", file=sys.stderr)
        print("[fetch-data] what finished is kept: the same command resumes from there", file=sys.stderr)
        return 2
    print(f"[fetch-data] done: {dest} (chapter 6 reads it when ../shared/data and $BLENDER_BOOK_SHARED_DATA are absent)")
    return 0


def parse_source(text: str) -> tuple[str, str]:
    """``NAME=BASE`` of ``--source``."""
    from .real_data_fetch import SOURCES

    name, sep, base = text.partition("=")
    if not sep or name not in SOURCES or not base:
        raise SystemExit(f"blender-book: error: --source must be NAME=BASE with NAME one of {sorted(SOURCES)}, got {text!r}")
    return name, base


def train(args: argparse.Namespace) -> int:
    """Chapter 3's PairRanker with the chapter's own parameters (its defaults, then the profile): the
    same run folder, so the chapter loads what this trained. Each process of a launch trains on its
    shard (effective batch = processes x batch_size, recorded in the run's state.json); the main
    process publishes."""
    import os

    from .mixinstruct import load_build
    from .rankers import PairRankerConfig, train_in_cache

    values = chapter_values("03_pairranker", _profile(args))
    config = PairRankerConfig.from_dict({**values["pairranker"], "seed": values["seed"], "device": values["device"]})
    splits, _ = load_build()
    report = train_in_cache(splits["train"], splits["val"], config, progress=True)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[blender-book] PairRanker: best epoch {report.best_epoch} of {report.epochs_completed}: {report.best_dir}")
    return 0


def _profile(args: argparse.Namespace) -> dict:
    parameters = load_parameter_files(args.params)
    for override in args.param:
        key, value = parse_override(override)
        parameters[key] = value
    return parameters


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fetch-data":
        return fetch_data(args)
    if args.command == "train":
        try:
            return train(args)
        except RunnerError as err:
            print(f"blender-book: error: {err}", file=sys.stderr)
            return 2
    try:
        if args.command == "chapters":
            from .runner import declared_parameters

            for path in list_chapters():
                params = declared_parameters(path)
                print(f"{path.stem}: " + ", ".join(f"{k}={v['default']}" for k, v in params.items()))
            return 0
        parameters = _profile(args)
        out_dir = args.out
        if args.dry_run and out_dir is None and not args.inplace:
            out_dir = Path("runs/dry-run")  # never created: a dry run executes nothing
        plan = plan_run(select_chapters(args.chapters), parameters, out_dir=out_dir, inplace=args.inplace)
        if args.dry_run:
            from .runner import describe

            print(describe(plan))
            return 0
        plan = execute_plan(plan, log_output=args.log_output)
    except RunnerError as err:
        print(f"blender-book: error: {err}", file=sys.stderr)
        return 2
    total = sum(r.seconds or 0.0 for r in plan.chapters)
    kept = [r.stem for r in plan.chapters if r.status == KEPT]
    ran = len(plan.chapters) - len(kept)
    print(f"[blender-book] {ran} chapter(s) done in {total:.1f} s"
          + (f"; {len(kept)} {KEPT}: {', '.join(kept)}" if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
