"""CLI: generate and prepare end to end; errors are one clear line, exit code 2; serve/dashboard run the apps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys import cli
from recsys.cache.build import build_cache

from _logs import random_log


def test_generate_then_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, out = tmp_path / "raw.csv", tmp_path / "prepared" / "interactions.parquet"
    assert cli.main(["generate", "--scale", "0.01", "--seed", "1", "--output", str(raw)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 5000
    assert cli.main(["prepare", "--input", str(raw), "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["identity_holds"] and summary["rows_in"] == 5000 and out.is_file()


def test_missing_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["prepare", "--input", str(tmp_path / "absent.csv"), "--output", str(tmp_path / "p.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and "absent.csv" in err and "recsys generate" in err and "Traceback" not in err


def test_generate_behaviour_flags_and_side_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw.csv"
    args = [
        "generate",
        "--scale",
        "0.01",
        "--seed",
        "2",
        "--output",
        str(raw),
        "--category-loyalty",
        "0.35",
        "--name-signal",
        "0",
    ]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["behaviour"] == {"category_loyalty": 0.35, "name_signal": 0.0, "retention": None}
    assert (tmp_path / "raw.categories.parquet").is_file()
    assert cli.main(["generate", "--scale", "0.01", "--output", str(raw), "--retention", "2"]) == 2
    assert "generate.behaviour.retention must be in (0, 1)" in capsys.readouterr().err


def test_profile_of_a_non_case_study_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, out = tmp_path / "raw.csv", tmp_path / "prepared" / "interactions.parquet"
    assert cli.main(["generate", "--scale", "0.02", "--seed", "1", "--output", str(raw)]) == 0
    assert cli.main(["prepare", "--input", str(raw), "--output", str(out)]) == 0
    capsys.readouterr()
    # a case-study layout gets the calibration table; --categories checks inference against the truth
    assert (
        cli.main(
            [
                "profile",
                "--input",
                str(out),
                "--scale",
                "0.02",
                "--categories",
                str(tmp_path / "raw.categories.parquet"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["source"] == "case_study" and result["calibration"] is not None
    assert result["axes"]["agreement"]["ari"] > 0.5 and result["axes"]["loyalty_true"]["measured_users"] > 0
    # the same table read as another layout: no calibration against the case-study profile
    summary = out.with_name("prepare_summary.json")
    summary.write_text(summary.read_text().replace('"source": "case_study"', '"source": "online_retail"'))
    assert cli.main(["profile", "--input", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["calibration"] is None and result["axes"]["loyalty_true"] is None
    assert result["axes"]["retention_pct"] > 0 and result["axes"]["loyalty_inferred"]["measured_users"] > 0


def test_the_cli_never_imports_the_app_layers() -> None:
    code = (
        "import sys, recsys.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in {'service', 'dashboard'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_serve_runs_python_m_service(tmp_path: Path) -> None:
    env = {**os.environ, "RECSYS_CACHE_DIR": str(tmp_path / "no-cache-here")}
    proc = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3  # service.main.EXIT_NO_CACHE: the service itself answered
    assert "no-cache-here" in proc.stderr and "manifest.json is missing" in proc.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["dashboard"], ["-m", "dashboard"]),
        (["dashboard", "--port", "9123"], ["-m", "dashboard", "--port", "9123"]),
        (["serve"], ["-m", "service"]),
    ],
)
def test_app_commands_exec_the_app_package(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: list[str]
) -> None:
    seen: list[list[str]] = []

    def fake_execv(path: str, args: list[str]) -> None:
        seen.append(args)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", fake_execv)
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert seen == [[sys.executable, *expected]]


def test_audience_of_a_new_name_as_json_and_as_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = random_log(n_rows=1500, n_users=150, n_products=40, seed=9)
    build_cache(log, "content", {"seed": 0, "token_user_cap": 500}, tmp_path / "cache", n=10)
    assert cli.main(["audience", "--name", "عطر 003 جديد", "--n", "5", "--cache", str(tmp_path / "cache")]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["basis"] == "name" and body["count"] == 5 and len(body["customers"]) == 5
    excluded = body["customers"][0]["customer_id"]
    (tmp_path / "exclude.txt").write_text(f"{excluded}\n", encoding="utf-8")
    out = tmp_path / "audience.csv"
    args = ["audience", "--name", "=عطر 003", "--n", "5", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert cli.main([*args, "--exclude", str(tmp_path / "exclude.txt")]) == 0
    text = out.read_text(encoding="utf-8-sig")
    assert text.startswith("# name: =عطر 003\n# model: content")  # settings header lines (no cell starts with =)
    table = pd.read_csv(out, comment="#", encoding="utf-8-sig")
    assert table["rank"].tolist() == [1, 2, 3, 4, 5] and excluded not in table["customer_id"].tolist()
    assert cli.main(["audience", "--name", "  \x00 ", "--cache", str(tmp_path / "cache")]) == 2
    assert "--name is empty" in capsys.readouterr().err
