"""The sharded generator used for large scales (scale >= 100): shards are independent, ids disjoint, one header."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main
from recsys.data.synthetic import generate, generate_frame, generate_sharded, shard_seed


def read(path: Path) -> pd.DataFrame:
    """The generated CSV with every column as text, as the prepare step sees it."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_one_shard_is_the_unsharded_log(tmp_path: Path) -> None:
    generate(tmp_path / "plain.csv", scale=0.01, seed=3)
    info = generate_sharded(tmp_path / "sharded.csv", scale=0.01, seed=3, shard_scale=1.0)
    assert info["shards"] == 1
    assert (tmp_path / "plain.csv").read_bytes() == (tmp_path / "sharded.csv").read_bytes()


def test_shards_have_disjoint_ids_and_one_increasing_index(tmp_path: Path) -> None:
    info = generate_sharded(tmp_path / "log.csv", scale=0.03, seed=5, shard_scale=0.01)
    assert info["shards"] == 3
    log = read(tmp_path / "log.csv")
    shards = [generate_frame(scale=0.01, seed=shard_seed(5, i)) for i in range(3)]
    assert len(log) == info["rows"] == sum(len(s) for s in shards)
    assert list(log.columns) == ["index", "product_id", "customer_id", "product_name", "Event_Date", "Event"]
    assert (log["index"] == "index").sum() == 0  # the header is written once
    index = log["index"].astype(np.int64).to_numpy()
    assert np.all(np.diff(index) > 0)
    bounds = np.cumsum([0] + [len(s) for s in shards])
    products = [set(log["product_id"].iloc[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    customers = [set(log["customer_id"].iloc[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not products[i] & products[j] and not customers[i] & customers[j]
    # each shard is its own generate_frame with shifted ids: same events, same dates, same names
    second = log.iloc[bounds[1] : bounds[2]]
    assert second["Event"].tolist() == shards[1]["Event"].astype(str).tolist()
    assert second["Event_Date"].tolist() == shards[1]["Event_Date"].fillna("").astype(str).tolist()
    shift = int(second["product_id"].astype(np.int64).min()) - int(shards[1]["product_id"].min())
    assert (second["product_id"].astype(np.int64).to_numpy() - shards[1]["product_id"].to_numpy() == shift).all()
    assert shift > int(shards[0]["product_id"].max())
    assert shard_seed(5, 0) == 5 and len({shard_seed(5, i) for i in range(3)}) == 3


def test_cli_shards_on_request_and_rejects_bad_scales(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert main(["generate", "--scale", "0.02", "--seed", "1", "--shard-scale", "0.01", "--output", str(out)]) == 0
    assert len(read(out)) == sum(len(generate_frame(scale=0.01, seed=shard_seed(1, i))) for i in range(2))
    with pytest.raises(ValueError, match="shard_scale must be > 0"):
        generate_sharded(out, scale=1.0, shard_scale=0.0)
