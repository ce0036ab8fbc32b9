"""Command line: ``blender-book run [CHAPTERS] --params FILE -p key=value --out runs/NAME``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runner import RunnerError, execute_plan, list_chapters, load_parameter_files, parse_override, plan_run, select_chapters


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "chapters":
            from .runner import declared_parameters

            for path in list_chapters():
                params = declared_parameters(path)
                print(f"{path.stem}: " + ", ".join(f"{k}={v['default']}" for k, v in params.items()))
            return 0
        parameters = load_parameter_files(args.params)
        for override in args.param:
            key, value = parse_override(override)
            parameters[key] = value
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
    print(f"[blender-book] {len(plan.chapters)} chapter(s) done in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
