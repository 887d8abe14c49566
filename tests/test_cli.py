"""CLI: generate and prepare end to end; errors are one clear line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys import cli


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
    args = ["generate", "--scale", "0.01", "--seed", "2", "--output", str(raw), "--category-loyalty", "0.35", "--name-signal", "0"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["behaviour"] == {"category_loyalty": 0.35, "name_signal": 0.0, "retention": None}
    assert (tmp_path / "raw.categories.parquet").is_file()
    assert cli.main(["generate", "--scale", "0.01", "--output", str(raw), "--retention", "2"]) == 2
    assert "generate.behaviour.retention must be in (0, 1)" in capsys.readouterr().err

