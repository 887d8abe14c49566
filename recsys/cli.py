"""Command line: `recsys <command>` (generate, prepare, profile, evaluate, campaigns, sensitivity, build-cache,
campaign, notebook, summary, serve, dashboard)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from recsys import config
from recsys.cache.manifest import CacheError


def _generate(args: argparse.Namespace) -> dict[str, Any]:
    """Write the synthetic log in the case-study raw format, and its true product categories."""
    from recsys.data.synthetic import (
        DEFAULT_SHARD_SCALE,
        SHARDED_FROM_SCALE,
        behaviour_from_params,
        categories_path,
        generate,
        generate_sharded,
    )

    p = config.load_params("generate")["generate"]
    out = config.resolve(args.output or p["output"])
    if args.categories:
        cats = config.resolve(args.categories)
    elif args.output or not p.get("categories"):
        cats = categories_path(out)  # next to a CSV written elsewhere than params say
    else:
        cats = config.resolve(p["categories"])
    overrides = {
        k: v
        for k, v in (
            ("category_loyalty", args.category_loyalty),
            ("name_signal", args.name_signal),
            ("retention", args.retention),
        )
        if v is not None
    }
    behaviour = behaviour_from_params({**(p.get("behaviour") or {}), **overrides})
    scale = args.scale if args.scale is not None else float(p["scale"])
    seed = args.seed if args.seed is not None else int(p["seed"])
    shard_scale = args.shard_scale or (DEFAULT_SHARD_SCALE if scale >= SHARDED_FROM_SCALE else None)
    if shard_scale:
        return generate_sharded(
            out, scale=scale, seed=seed, shard_scale=shard_scale, behaviour=behaviour, categories=cats
        )
    return generate(out, scale=scale, seed=seed, behaviour=behaviour, categories=cats)


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Raw log -> canonical Parquet + quarantine + summary."""
    from recsys.data.contract import source_spec_from_params
    from recsys.data.prepare import prepare, summary_dict

    name = args.dataset or config.DEFAULT_DATASET
    src = dict(config.dataset_config(name).get("source") or {})
    spec = source_spec_from_params({**src, **({"preset": args.preset} if args.preset else {})})
    if not (args.input or src.get("path")):
        raise ValueError(f"params/prepare.yaml: datasets.{name}.source.path is missing (the raw file to read)")
    output = config.resolve(args.output) if args.output else config.dataset_paths(name).interactions
    summary = prepare(config.resolve(args.input or src["path"]), output, spec)
    return summary_dict(summary)


def _profile(args: argparse.Namespace) -> dict[str, Any]:
    """Profile statistics, behaviour axes (retention, category loyalty) and the case-study calibration table."""
    import pandas as pd

    from recsys.data.contract import load_prepared
    from recsys.data.profile import calibration_table, load_profile, profile_stats
    from recsys.features.categories import category_params_from
    from recsys.reporting.explore import behaviour_axes, has_case_study_layout, split_block, true_categories_for

    default = config.dataset_paths(args.dataset or config.DEFAULT_DATASET).interactions
    prepared = config.resolve(args.input) if args.input else default
    df = load_prepared(prepared)
    summary_path = prepared.with_name("prepare_summary.json")
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    ex = config.load_params("explore")["explore"]
    quantile = args.quantile if args.quantile is not None else float(ex["split_quantile"])
    stats = profile_stats(df, summary, quantile)
    categories = args.categories
    if categories is None and args.dataset:
        categories = config.dataset_config(args.dataset).get("categories") or ""
    truth_path = true_categories_for(categories, summary)
    truth = pd.read_parquet(truth_path) if truth_path is not None else None
    axes, _ = behaviour_axes(
        df,
        quantile,
        category_params_from(ex.get("categories")),
        truth,
        int(ex.get("loyalty_permutations", 20)),
        split_block(stats),
    )
    result: dict[str, Any] = {
        "input": config.relative(prepared),
        "source": summary.get("source") if summary else None,
        "rows": stats["rows"],
        "users": stats["unique_users"],
        "products": stats["unique_products"],
        "axes": {**axes, "true_categories": config.relative(truth_path) if truth_path is not None else None},
    }
    if has_case_study_layout(summary) or args.calibrate:
        table = calibration_table(stats, load_profile(), scale=args.scale)
        with pd.option_context("display.width", 160, "display.max_rows", 100):
            print(table.to_string(index=False), file=sys.stderr)
        result["calibration"] = {
            "all_within_tolerance": bool(table["ok"].all()),
            "failing": table.loc[~table["ok"], "metric"].tolist(),
        }
    else:
        result["calibration"] = None  # the published profile describes the case-study layout only
    return result


def _build_cache(args: argparse.Namespace) -> dict[str, Any]:
    """Top-N audience for every product, written as the cache artifact."""
    from recsys.cache.checks import write_checks
    from recsys.cache.stage import build_cache_from_params, check_built

    prepared: Path | str | None = None
    if args.input:  # URIs (hdfs://, s3a://, file://) go to the Spark engine untouched
        prepared = args.input if "://" in args.input else config.resolve(args.input)
    overrides: dict[str, Any] = {k: v for k, v in {"engine": args.engine, "ranker": args.ranker}.items() if v}
    if args.ranker:  # an explicit ranker serves new products too (no selection needed)
        overrides["new_products"] = "same"
    if args.uncapped:
        allocation = dict((config.load_params("cache").get("cache") or {}).get("allocation") or {})
        overrides["allocation"] = {**allocation, "max_exposures": None}
    cache_dir = config.resolve(args.output) if args.output else None
    manifest = build_cache_from_params(prepared_path=prepared, cache_dir=cache_dir, overrides=overrides or None)
    metrics = config.resolve(args.metrics) if args.metrics else None
    if metrics is None and not (args.output or args.input):
        metrics = config.CACHE_METRICS  # the default cache's checks: the stage's DVC metrics
    if metrics is not None:
        write_checks(check_built(cache_dir, prepared), metrics)
    return {**manifest.model_dump(mode="json"), "metrics": None if metrics is None else config.relative(metrics)}


def read_ids(path: str, column: str, kind: str) -> list[int | str]:
    """Ids from a file: one per line, or a CSV whose header has `column`; each parsed as the cache's id kind."""
    from recsys.data.ids import parse_id

    lines = [line.strip() for line in Path(config.resolve(path)).read_text(encoding="utf-8-sig").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if lines and ("," in lines[0] or lines[0] == column):
        header = [h.strip() for h in lines[0].split(",")]
        if column not in header:
            raise ValueError(f"{path}: a CSV needs a {column!r} column (found {header}); or write one id per line")
        at = header.index(column)
        lines = [line.split(",")[at].strip() for line in lines[1:]]
    out: list[int | str] = []
    for i, raw in enumerate(lines, start=1):
        value = parse_id(raw, kind)
        if value is None:
            raise ValueError(f"{path}: line {i}: {raw!r} is not a {kind} id, as this cache's {column}s are")
        out.append(value)
    if not out:
        raise ValueError(f"{path}: no {column} in it")
    return out


def _campaign(args: argparse.Namespace) -> dict[str, Any]:
    """Allocate a campaign's audiences from the served cache and write them as one CSV for people."""
    from recsys.allocation.campaign import allocate_campaign
    from recsys.allocation.export import campaign_header, campaign_table, product_names
    from recsys.allocation.problem import Campaign
    from recsys.cache.lookup import AudienceLookup
    from recsys.exports import write_csv
    from recsys.reasons import audience_reasons, reason_text

    lookup = AudienceLookup.open(config.resolve(args.cache) if args.cache else config.CACHE_DIR)
    campaign = Campaign(
        product_ids=read_ids(args.products, "product_id", lookup.id_kind),
        n=args.n,
        max_per_customer=args.cap,
        min_audience=args.min_audience,
        exclude_customers=read_ids(args.exclude, "customer_id", lookup.customer_kind) if args.exclude else [],
    )
    result = allocate_campaign(lookup, campaign)
    manifest = lookup.manifest
    prepared = config.dataset_paths(manifest.dataset).interactions if manifest.dataset else None
    names = product_names(prepared) if prepared is not None and prepared.is_file() else None
    reasons = audience_reasons(lookup, result.problem.product_ids, result.offsets, result.codes, result.scores)
    texts = None if reasons is None else [reason_text(r) for r in reasons]
    table = campaign_table(result, lookup.customer_ids(result.codes), names, texts)
    out = config.resolve(args.out)
    write_csv(table, out, campaign_header(result, manifest))
    return {"out": config.relative(out), "rows": len(table), "figures": result.figures.model_dump(mode="json")}


def _audience(args: argparse.Namespace) -> dict[str, Any]:
    """The audience of a product name never seen in the log (the cache's new-products model), with the evidence."""
    from recsys.basis import MAX_NAME_CHARS
    from recsys.cache.by_name import audience_table, clean_name, name_audience
    from recsys.cache.lookup import AudienceLookup
    from recsys.exports import write_csv

    name = clean_name(args.name)
    if not name:
        raise ValueError("--name is empty or only white space / control characters")
    if len(args.name) > MAX_NAME_CHARS:
        raise ValueError(f"--name is {len(args.name)} characters long; at most {MAX_NAME_CHARS} are accepted")
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    lookup = AudienceLookup.open(config.resolve(args.cache) if args.cache else config.CACHE_DIR)
    exclude = read_ids(args.exclude, "customer_id", lookup.customer_kind) if args.exclude else []
    body = name_audience(lookup, name, args.n, exclude)
    summary = {k: body[k] for k in ("name", "model", "basis", "fallback", "reason", "known_tokens", "count")}
    if args.out:
        out = config.resolve(args.out)
        header = {**{k: body[k] for k in ("name", "model", "basis", "reason")}, "cache_version": body["cache_version"]}
        write_csv(audience_table(body), out, header)
        return {**summary, "out": config.relative(out)}
    return {**summary, "similar_products": body["similar_products"], "customers": body["customers"]}


def exec_module(module: str, *args: str) -> NoReturn:
    """Replace this process with `python -m module args` (the app runs on its own; signals reach it directly)."""
    argv = [sys.executable, "-m", module, *args]
    os.execv(argv[0], argv)  # nosec B606 # replaces this process with python -m <own module>, argv built here


def _serve(args: argparse.Namespace) -> dict[str, Any]:
    """Run the HTTP service: `python -m service` (settings from RECSYS_* variables)."""
    exec_module("service")


def _notebook(args: argparse.Namespace) -> dict[str, Any]:
    """Execute a pipeline notebook with papermill into reports/ and render HTML."""
    import yaml

    from recsys.reporting.notebooks import dataset_parameters, run_notebook

    params: dict[str, Any] = {}
    output_dir = None
    if args.dataset:
        params, output_dir = dataset_parameters(args.name, args.dataset)
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter {item!r} must look like key=value")
        params[key] = yaml.safe_load(value)
    return run_notebook(args.name, params, output_dir)


def _dashboard(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the Voilà dashboard (127.0.0.1 by default): `python -m dashboard --port N [--host H]`."""
    extra = ["--port", str(args.port)] if args.port is not None else []
    extra += ["--host", args.host] if args.host else []
    exec_module("dashboard", *extra)


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation once (tuning on validation, one test scoring) and write its results."""
    from recsys.evaluation.run import main as evaluate_main

    argv = [*(["--input", args.input] if args.input else []), *(["--quick"] if args.quick else [])]
    if args.dataset:
        paths = config.dataset_paths(args.dataset)
        argv = [
            "--input",
            args.input or str(paths.interactions),
            "--prepare-summary",
            str(paths.prepare_summary),
            "--output-dir",
            str(paths.evaluation_dir),
            "--metrics",
            str(paths.metrics_dir / "evaluate.json"),
            "--plots-dir",
            str(paths.reports_dir / "plots"),
            "--dataset",
            args.dataset,
            *(["--quick"] if args.quick else []),
        ]
    code = evaluate_main(argv)
    if code:
        raise SystemExit(code)
    return {}


def _sensitivity(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate synthetic logs across the generator's unpinned settings into reports/sensitivity/."""
    from recsys.evaluation.sensitivity import run_sweep, write_outputs

    out_dir = config.resolve(args.output) if args.output else config.REPORTS_DIR / "sensitivity"
    summary = run_sweep()
    paths = write_outputs(summary, out_dir)
    return {
        "points": len(summary.points),
        "conditions": summary.conditions,
        **{k: config.relative(v) for k, v in paths.items()},
    }


def _campaigns(args: argparse.Namespace) -> dict[str, Any]:
    """The per-campaign cap study of the evaluation's default ranker on one data set."""
    from recsys.evaluation.campaigns_run import main as campaigns_main

    code = campaigns_main(["--dataset", args.dataset] if args.dataset else [])
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
    "evaluate": ("run the evaluation (validation tuning, one test scoring) of a data set into its reports", _evaluate),
    "campaigns": ("evaluate per-campaign caps on campaigns sampled from a data set's test window", _campaigns),
    "build-cache": ("build the top-N audience cache for every product", _build_cache),
    "campaign": ("allocate a campaign's audiences from the cache under a per-customer cap, as a CSV", _campaign),
    "audience": ("the audience of a product name never seen in the log, with each customer's evidence", _audience),
    "notebook": ("execute a pipeline notebook (papermill: explore, evaluate, cf_proof, cache, sensitivity)", _notebook),
    "sensitivity": (
        "evaluate synthetic logs across the generator's unpinned settings into reports/sensitivity",
        _sensitivity,
    ),
    "summary": ("write reports/summary.md from the pipeline's metrics", _summary),
    "dashboard": ("serve the Voilà dashboard (127.0.0.1 by default): python -m dashboard", _dashboard),
    "serve": ("run the HTTP service over the cache: python -m service (settings from RECSYS_* env vars)", _serve),
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
            p.add_argument("--categories", help="true-category Parquet (default: params, or next to --output)")
            p.add_argument(
                "--category-loyalty", type=float, help="behaviour: share of return visits to a known category"
            )
            p.add_argument("--name-signal", type=float, help="behaviour: share of products keeping their own name")
            p.add_argument("--retention", type=float, help="behaviour: target retention share across the 80%% split")
            p.add_argument(
                "--shard-scale",
                type=float,
                help="write independent shards of this scale, one in memory at a time (default: 10 from scale 100 on)",
            )
        if name in {"prepare", "profile", "build-cache", "evaluate"}:
            p.add_argument("--input", help="input path (default: params)")
        if name == "evaluate":
            p.add_argument("--quick", action="store_true", help="small factor models, tuning budget 1 (smoke run)")
        if name in {"prepare", "build-cache", "sensitivity"}:
            p.add_argument("--output", help="output path (default: params/config)")
        if name == "build-cache":
            p.add_argument(
                "--engine",
                choices=["pandas", "spark"],
                help="pandas or spark (default: params/cache.yaml cache.engine)",
            )
            p.add_argument("--ranker", help="ranker name (default: params/cache.yaml cache.ranker)")
            p.add_argument(
                "--uncapped", action="store_true", help="serve each product's uncapped top-n (no exposure cap)"
            )
            p.add_argument(
                "--metrics",
                help="write the cache's checks here (default: reports/metrics/cache.json for the default cache only)",
            )
        if name == "campaign":
            p.add_argument("--products", required=True, help="product ids: one per line, or a CSV with product_id")
            p.add_argument("--n", type=int, required=True, help="audience size of every product (<= candidate depth)")
            p.add_argument("--cap", type=int, help="most messages one customer gets in the campaign (default: none)")
            p.add_argument("--min-audience", type=int, default=0, help="every product reaches this before any more")
            p.add_argument("--exclude", help="customers never messaged: one id per line, or a CSV with customer_id")
            p.add_argument("--out", required=True, help="CSV to write (settings in '# key: value' header lines)")
            p.add_argument("--cache", help="cache directory (default: data/artifacts/cache)")
        if name == "audience":
            p.add_argument("--name", required=True, help="the new product's name (any script, at most 500 characters)")
            p.add_argument("--n", type=int, default=100, help="customers to return (default 100)")
            p.add_argument("--exclude", help="customers never returned: one id per line, or a CSV with customer_id")
            p.add_argument("--out", help="CSV to write (settings in '# key: value' header lines); default: JSON")
            p.add_argument("--cache", help="cache directory (default: data/artifacts/cache)")
        if name in {"prepare", "profile", "evaluate", "notebook", "campaigns"}:
            p.add_argument("--dataset", help="data set name of params/prepare.yaml: datasets (default: synthetic)")
        if name == "prepare":
            p.add_argument(
                "--preset", help="column-mapping preset: case_study, online_retail, retailrocket, rees46, none"
            )
        if name == "notebook":
            p.add_argument("name", help="explore | cf_proof | cache | evaluate")
            p.add_argument("-p", "--param", action="append", help="notebook parameter key=value (YAML value)")
        if name == "dashboard":
            p.add_argument("--port", type=int, help="port (default: python -m dashboard's)")
            p.add_argument("--host", help="interface (default 127.0.0.1; beyond loopback a token is required)")
        if name == "profile":
            p.add_argument("--scale", type=float, default=1.0, help="scale the published counts by this factor")
            p.add_argument("--quantile", type=float, help="date quantile of the split (default: params/explore.yaml)")
            p.add_argument(
                "--categories", help="Parquet of true product categories (product_id, category) to check against"
            )
            p.add_argument("--calibrate", action="store_true", help="print the calibration table whatever the layout")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the step's result as JSON and returns a process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        result = COMMANDS[args.command][1](args)
    except (FileNotFoundError, ValueError, CacheError) as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if result:
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
