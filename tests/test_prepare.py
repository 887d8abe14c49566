"""Prepare: every input row is kept or rejected with a reason; bad input fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recsys.data.contract import PRESETS, DataContractError, SourceSpec, load_prepared, source_spec_from_params
from recsys.data.prepare import prepare

CASE_STUDY_CSV = """index,product_id,customer_id,product_name,Event_Date,Event
3,11,1001,"عطر 011",2023-03-28 02:03:31+00:00,purchased
9,12,1002,"زيت زيتون, بكر ممتاز 500 مل",2023-03-28 03:00:00+00:00,cart
17,13,1003,"Chocolate ""Dark"" 100 G",2023-01-02 10:00:00+00:00,Cart
18,13,1003,"Chocolate ""Dark"" 100 G",2023-01-02 10:00:00+00:00,cart
25,14,1004,"شامبو 400 مل",,wishlist
31,15,1005,"قهوة 250 G",2023-02-01 08:00:00+00:00,teleport
40,16,1006,"أرز 5 كيلو",not-a-date,purchased
41,17,,"تمر 1 كيلو",2023-02-03 08:00:00+00:00,cart
52,18,1007,"حليب 1 لتر",2022-10-01 00:03:06+00:00, Rating 
"""


def write(tmp_path: Path, text: str, name: str = "raw.csv") -> Path:
    """Write a raw file into the test's temp dir."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_case_study_accounting_and_reasons(tmp_path: Path) -> None:
    raw = write(tmp_path, CASE_STUDY_CSV)
    out = tmp_path / "prepared" / "interactions.parquet"
    summary = prepare(raw, out, PRESETS["case_study"])
    assert summary.rows_in == 9
    assert summary.kept == 5
    assert summary.rejected == {
        "missing_customer": 1,
        "missing_product": 0,
        "missing_event": 0,
        "unknown_event": 1,
        "excluded_event": 0,
        "bad_date": 1,
        "duplicate": 1,
    }
    assert summary.identity_holds and summary.rows_in == summary.kept + sum(summary.rejected.values())
    assert summary.undated_kept == 1

    df = load_prepared(out)
    assert list(df.columns) == ["customer_id", "product_id", "product_name", "event", "event_date"]
    assert str(df["event_date"].dtype) == "datetime64[us, UTC]"
    assert df["customer_id"].dtype == "int32" and df["product_id"].dtype == "int32"
    assert set(df["event"].astype(str)) == {"purchased", "cart", "wishlist", "rating"}
    wish = df[df["event"] == "wishlist"]
    assert len(wish) == 1 and wish["event_date"].isna().all()
    names = set(df["product_name"].astype(str))
    assert "زيت زيتون, بكر ممتاز 500 مل" in names and 'Chocolate "Dark" 100 G' in names
    assert df.loc[df["product_id"] == 11, "event_date"].iloc[0] == pd.Timestamp("2023-03-28 02:03:31", tz="UTC")

    quarantine = pd.read_parquet(tmp_path / "prepared" / "quarantine.parquet")
    assert sorted(quarantine["reason"]) == ["bad_date", "duplicate", "missing_customer", "unknown_event"]
    assert sorted(quarantine["source_row"]) == [4, 6, 7, 8]
    on_disk = json.loads((tmp_path / "prepared" / "prepare_summary.json").read_text())
    assert on_disk["identity_holds"] is True and on_disk["kept"] == 5


def test_header_case_and_whitespace_tolerated(tmp_path: Path) -> None:
    text = CASE_STUDY_CSV.replace("index,product_id,customer_id,product_name,Event_Date,Event", " INDEX , Product_ID,Customer_Id ,PRODUCT_NAME,event_date, event ")
    summary = prepare(write(tmp_path, text), tmp_path / "p.parquet", PRESETS["case_study"])
    assert summary.kept == 5


def test_string_sku_log_via_mapping(tmp_path: Path) -> None:
    text = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,CustomerID
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,17850
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,17850
536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,C-17851
536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,2010-12-01 08:34:00,
"""
    spec = source_spec_from_params(
        {
            "mapping": {"customer_id": "CustomerID", "product_id": "StockCode", "product_name": "Description", "event_date": "InvoiceDate", "event": None},
            "constant_event": "purchased",
        }
    )
    summary = prepare(write(tmp_path, text), tmp_path / "p.parquet", spec)
    assert summary.kept == 3 and summary.rejected["missing_customer"] == 1
    df = load_prepared(tmp_path / "p.parquet")
    assert df["product_id"].dtype == "string"
    assert df["customer_id"].dtype == "string"
    assert "85123A" in set(df["product_id"]) and "C-17851" in set(df["customer_id"])
    assert set(df["event"].astype(str)) == {"purchased"}


def test_retailrocket_preset(tmp_path: Path) -> None:
    text = """timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,992329,addtocart,248676,
1433221999827,111016,transaction,318965,4000
1433221955914,483717,view,253185,
1433221337106,951259,remove,367447,
"""
    summary = prepare(write(tmp_path, text), tmp_path / "p.parquet", PRESETS["retailrocket"])
    assert summary.kept == 4 and summary.rejected["unknown_event"] == 1
    df = load_prepared(tmp_path / "p.parquet")
    assert sorted(df["event"].astype(str)) == ["cart", "purchased", "view", "view"]
    assert df["event_date"].min() == pd.Timestamp(1433221332117, unit="ms", tz="UTC")
    assert df["product_name"].isna().all()


def test_rees46_preset(tmp_path: Path) -> None:
    text = """event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session
2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde
2019-10-01 00:00:01 UTC,cart,3900821,2053013552326770905,appliances.environment.water_heater,aqua,33.20,554748717,9333dfbd
2019-10-01 00:00:02 UTC,purchase,17200506,2053013559792632471,furniture.living_room.sofa,,543.10,519107250,566511c2
2019-10-01 00:00:03 UTC,remove_from_cart,1307067,2053013558920217191,computers.notebook,lenovo,251.74,550050854,7c90fc70
"""
    summary = prepare(write(tmp_path, text), tmp_path / "p.parquet", PRESETS["rees46"])
    assert summary.kept == 3 and summary.rejected["excluded_event"] == 1
    df = load_prepared(tmp_path / "p.parquet").sort_values("event_date")
    assert df["event"].astype(str).tolist() == ["view", "cart", "purchased"]
    assert df["product_name"].astype(str).tolist() == ["shiseido", "appliances.environment.water_heater aqua", "furniture.living_room.sofa"]
    assert df["event_date"].iloc[1] == pd.Timestamp("2019-10-01 00:00:01", tz="UTC")


def test_parquet_input(tmp_path: Path) -> None:
    raw = pd.read_csv(write(tmp_path, CASE_STUDY_CSV), dtype=str)
    raw.to_parquet(tmp_path / "raw.parquet")
    summary = prepare(tmp_path / "raw.parquet", tmp_path / "p.parquet", PRESETS["case_study"])
    assert summary.kept == 5 and summary.identity_holds


def test_missing_file_names_path_and_how_to_get_data(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError) as err:
        prepare(missing, tmp_path / "p.parquet", PRESETS["case_study"])
    assert str(missing) in str(err.value) and "recsys generate" in str(err.value)


def test_missing_column_is_named(tmp_path: Path) -> None:
    text = "index,product_id,product_name,Event_Date,Event\n1,2,x,2023-01-01 00:00:00+00:00,cart\n"
    with pytest.raises(DataContractError) as err:
        prepare(write(tmp_path, text), tmp_path / "p.parquet", PRESETS["case_study"])
    assert "'customer_id'" in str(err.value) and "mapping" in str(err.value)


def test_zero_valid_rows_is_an_error_but_quarantine_is_written(tmp_path: Path) -> None:
    text = "index,product_id,customer_id,product_name,Event_Date,Event\n1,2,3,x,2023-01-01 00:00:00+00:00,teleport\n"
    with pytest.raises(DataContractError, match="no valid rows"):
        prepare(write(tmp_path, text), tmp_path / "p.parquet", PRESETS["case_study"])
    assert len(pd.read_parquet(tmp_path / "quarantine.parquet")) == 1
    assert not (tmp_path / "p.parquet").exists()


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_bytes(b"index,product_id,customer_id,product_name,Event_Date,Event\n1,2,3,\xff\xfe,2023-01-01,cart\n")
    with pytest.raises(DataContractError, match="could not read"):
        prepare(path, tmp_path / "p.parquet", PRESETS["case_study"])


def test_unknown_preset_is_a_clear_error() -> None:
    with pytest.raises(DataContractError, match="unknown preset"):
        source_spec_from_params({"preset": "amazon"})


def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="empty"):
        prepare(write(tmp_path, ""), tmp_path / "p.parquet", SourceSpec(mapping=PRESETS["case_study"].mapping))
