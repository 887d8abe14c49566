"""Command line: `recsys generate | prepare | profile | evaluate | build-cache | notebook | summary | serve | dashboard`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from recsys import config


def _generate(args: argparse.Namespace) -> dict[str, Any]:
    """Write the synthetic log in the case-study raw format."""
    from recsys.data.synthetic import generate

    p = config.load_params("generate")["generate"]
    out = config.resolve(args.output or p["output"])
    return generate(out, scale=args.scale if args.scale is not None else float(p["scale"]),
                    seed=args.seed if args.seed is not None else int(p["seed"]))


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Raw log -> canonical Parquet + quarantine + summary."""
    from recsys.data.contract import source_spec_from_params
    from recsys.data.prepare import prepare, summary_dict

    src = config.load_params("prepare")["source"]
    spec = source_spec_from_params({**src, **({"preset": args.preset} if args.preset else {})})
    summary = prepare(config.resolve(args.input or src["path"]), config.resolve(args.output or config.PREPARED_PARQUET), spec)
    return summary_dict(summary)


def _profile(args: argparse.Namespace) -> dict[str, Any]:
    """Profile statistics of the prepared table and the calibration table against the published profile."""
    import pandas as pd

    from recsys.data.contract import load_prepared
    from recsys.data.profile import calibration_table, load_profile, profile_stats

    df = load_prepared(config.resolve(args.input or config.PREPARED_PARQUET))
    summary_path = config.PREPARE_SUMMARY_JSON
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    stats = profile_stats(df, summary)
    table = calibration_table(stats, load_profile(), scale=args.scale)
    with pd.option_context("display.width", 160, "display.max_rows", 100):
        print(table.to_string(index=False), file=sys.stderr)
    return {"all_within_tolerance": bool(table["ok"].all()), "failing": table.loc[~table["ok"], "metric"].tolist()}


def _build_cache(args: argparse.Namespace) -> dict[str, Any]:
    """Top-N audience for every product, written as the cache artifact."""
    from recsys.cache.build import build_cache_from_params

    return build_cache_from_params(
        prepared_path=config.resolve(args.input) if args.input else None,
        cache_dir=config.resolve(args.output) if args.output else None,
    )


def _serve(args: argparse.Namespace) -> dict[str, Any]:
    """Run the HTTP service (uvicorn) over the cache."""
    from service.main import run

    code = run()
    if code:
        raise SystemExit(code)
    return {}


def _notebook(args: argparse.Namespace) -> dict[str, Any]:
    """Execute a pipeline notebook with papermill into reports/ and render HTML."""
    import yaml

    from recsys.reporting.notebooks import run_notebook

    params = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter {item!r} must look like key=value")
        params[key] = yaml.safe_load(value)
    return run_notebook(args.name, params)


def _dashboard(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the Voilà dashboard on 127.0.0.1 (replaces this process)."""
    from recsys.dashboard import serve

    serve(args.port)


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation once (tuning on validation, one test scoring) and write its results."""
    from recsys.evaluation.run import main as evaluate_main

    argv = [*(["--input", args.input] if args.input else []), *(["--quick"] if args.quick else [])]
    code = evaluate_main(argv)
    if code:
        raise SystemExit(code)
    return {}


def _summary(args: argparse.Namespace) -> dict[str, Any]:
    """Write reports/summary.md from the pipeline's metrics."""
    from recsys.reporting.summary import write_summary

    return {"summary": str(write_summary())}


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], dict[str, Any]]]] = {
    "generate": ("write the synthetic default log (case-study CSV format)", _generate),
    "prepare": ("read a raw log into the canonical Parquet, quarantining bad rows", _prepare),
    "profile": ("print the profile statistics vs the published profile", _profile),
    "evaluate": ("run the evaluation (validation tuning, one test scoring) into reports/evaluation", _evaluate),
    "build-cache": ("build the top-N audience cache for every product", _build_cache),
    "notebook": ("execute a pipeline notebook (papermill, kernel 'recsys') into reports/ + HTML", _notebook),
    "summary": ("write reports/summary.md from the pipeline's metrics", _summary),
    "dashboard": ("serve the Voilà dashboard on 127.0.0.1 (default port 8866)", _dashboard),
    "serve": ("run the HTTP service over the cache (settings from RECSYS_* env vars)", _serve),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per pipeline step."""
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == "generate":
            p.add_argument("--scale", type=float, help="size relative to the real log (default: params)")
            p.add_argument("--seed", type=int, help="random seed (default: params)")
            p.add_argument("--output", help="CSV path (default: params/generate.yaml)")
        if name in {"prepare", "profile", "build-cache", "evaluate"}:
            p.add_argument("--input", help="input path (default: params)")
        if name == "evaluate":
            p.add_argument("--quick", action="store_true", help="small factor models, tuning budget 1 (smoke run)")
        if name in {"prepare", "build-cache"}:
            p.add_argument("--output", help="output path (default: params/config)")
        if name == "prepare":
            p.add_argument("--preset", help="column-mapping preset: case_study, retailrocket, rees46")
        if name == "notebook":
            p.add_argument("name", help="explore | cf_proof | cache | evaluate")
            p.add_argument("-p", "--param", action="append", help="notebook parameter key=value (YAML value)")
        if name == "dashboard":
            p.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default 8866)")
        if name == "profile":
            p.add_argument("--scale", type=float, default=1.0, help="scale the published counts by this factor")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the step's result as JSON and returns a process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = COMMANDS[args.command][1](args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if result:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
