"""Prepare: every input row is kept or rejected with a reason; bad input fails clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from recsys.config import PROJ_ROOT
from recsys.data.contract import (
    PRESETS,
    DataContractError,
    RowFilter,
    SourceSpec,
    load_prepared,
    narrow_ids,
    parse_dates,
    source_spec_from_params,
)
from recsys.data.prepare import filter_passes, prepare

CASE_STUDY_CSV = """index,product_id,customer_id,product_name,Event_Date,Event
3,11,1001,"عطر 011",2023-03-28 02:03:31+00:00,purchased
9,12,1002,"زيت زيتون, بكر ممتاز 500 مل",2023-03-28 03:00:00+00:00,cart
17,13,1003,"Chocolate ""Dark"" 100 G",2023-01-02 10:00:00+00:00,Cart
18,13,1003,"Chocolate ""Dark"" 100 G",2023-01-02 10:00:00+00:00,cart
25,14,1004,"شامبو 400 مل",,wishlist
31,15,1005,"قهوة 250 G",2023-02-01 08:00:00+00:00,teleport
40,16,1006,"أرز 5 كيلو",not-a-date,purchased
41,17,,"تمر 1 كيلو",2023-02-03 08:00:00+00:00,cart
52,18,1007,"حليب 1 لتر",2022-10-01 00:03:06+00:00, Rating\x20
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
    text = CASE_STUDY_CSV.replace(
        "index,product_id,customer_id,product_name,Event_Date,Event",
        " INDEX , Product_ID,Customer_Id ,PRODUCT_NAME,event_date, event ",
    )
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
            "mapping": {
                "customer_id": "CustomerID",
                "product_id": "StockCode",
                "product_name": "Description",
                "event_date": "InvoiceDate",
                "event": None,
            },
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
"""  # noqa: E501 (rows verbatim in the REES46 export's format)
    summary = prepare(write(tmp_path, text), tmp_path / "p.parquet", PRESETS["rees46"])
    assert summary.kept == 3 and summary.rejected["excluded_event"] == 1
    df = load_prepared(tmp_path / "p.parquet").sort_values("event_date")
    assert df["event"].astype(str).tolist() == ["view", "cart", "purchased"]
    assert df["product_name"].astype(str).tolist() == [
        "shiseido",
        "appliances.environment.water_heater aqua",
        "furniture.living_room.sofa",
    ]
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


# --- Online Retail layout: the README recipe, the preset, row filters, float-coded ids, time zones ---

ONLINE_RETAIL_CSV = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom
536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,2010-12-01 08:34:00,1.69,13047.0,United Kingdom
C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom
C536383,35004C,SET OF 3 COLOURED  FLYING DUCKS,-1,2010-12-01 09:49:00,4.65,15311.0,United Kingdom
536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.0,12583.0,France
536414,22139,,56,2010-12-01 11:52:00,0.0,,United Kingdom
536589,21777,damages,-10,2010-12-01 16:50:00,0.0,,United Kingdom
536600,22960,JAM MAKING SET WITH JARS,-2,2010-12-02 10:00:00,4.25,17850.0,United Kingdom
556000,85123A,WHITE HANGING HEART T-LIGHT HOLDER,12,2011-06-09 10:15:00,2.55,13047.0,United Kingdom
"""
ONLINE_RETAIL_EXPECTED = {
    "cancelled": 2,
    "non_positive_quantity": 2,
    "non_product": 1,
    "missing_customer": 1,
    "missing_product": 0,
    "missing_event": 0,
    "unknown_event": 0,
    "excluded_event": 0,
    "bad_date": 0,
    "duplicate": 1,
}
README = PROJ_ROOT / "README.md"


def readme_recipe() -> dict:
    """The `source` block of the README's "any other CSV/Parquet" recipe, parsed from README.md."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Using the real file, or another log", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "expected exactly one yaml block (the recipe) in the README section"
    return yaml.safe_load(blocks[0])["source"]


def assert_online_retail_fixture(summary, prepared: Path) -> None:
    """Exact outcome of prepare on ONLINE_RETAIL_CSV."""
    assert summary.rows_in == 12 and summary.kept == 5
    assert summary.rejected == ONLINE_RETAIL_EXPECTED
    assert summary.identity_holds
    df = load_prepared(prepared)
    assert df["customer_id"].dtype == "int32" and sorted(set(df["customer_id"])) == [13047, 17850]
    assert df["product_id"].dtype == "string" and set(df["product_id"]) == {"85123A", "71053", "22633", "84879"}
    assert set(df["event"].astype(str)) == {"purchased"}
    by_id = df.set_index(["customer_id", "product_id"])["event_date"]
    assert by_id[(17850, "85123A")] == pd.Timestamp("2010-12-01 08:26", tz="UTC")  # GMT in winter
    assert by_id[(13047, "85123A")] == pd.Timestamp("2011-06-09 09:15", tz="UTC")  # BST in summer
    quarantine = pd.read_parquet(prepared.with_name("quarantine.parquet"))
    assert sorted(zip(quarantine["source_row"], quarantine["reason"], strict=True)) == [
        (3, "duplicate"),
        (6, "cancelled"),
        (7, "cancelled"),
        (8, "non_product"),
        (9, "missing_customer"),
        (10, "non_positive_quantity"),
        (11, "non_positive_quantity"),
    ]
    assert {"InvoiceNo", "Quantity"} <= set(quarantine.columns)  # filter columns are kept with the rows they set aside


def test_readme_recipe_runs_verbatim(tmp_path: Path) -> None:
    recipe = readme_recipe()
    assert recipe["path"] == "data/external/online_retail/online_retail.parquet"
    spec = source_spec_from_params(recipe)
    summary = prepare(write(tmp_path, ONLINE_RETAIL_CSV), tmp_path / "out" / "interactions.parquet", spec)
    assert_online_retail_fixture(summary, tmp_path / "out" / "interactions.parquet")


def test_online_retail_preset_is_the_readme_recipe(tmp_path: Path) -> None:
    preset, recipe = PRESETS["online_retail"], source_spec_from_params(readme_recipe())
    assert {k: v for k, v in preset.mapping.items() if v} == {k: v for k, v in recipe.mapping.items() if v}
    assert (preset.filters, preset.timezone, preset.constant_event, preset.date_format, dict(preset.event_map)) == (
        recipe.filters,
        recipe.timezone,
        recipe.constant_event,
        recipe.date_format,
        dict(recipe.event_map),
    )
    summary = prepare(write(tmp_path, ONLINE_RETAIL_CSV), tmp_path / "interactions.parquet", preset)
    assert_online_retail_fixture(summary, tmp_path / "interactions.parquet")
    assert summary.source == "online_retail"


def test_vendored_online_retail_counts_match_the_raw_file(tmp_path: Path) -> None:
    path = PROJ_ROOT / "data/external/online_retail/online_retail.parquet"
    summary = prepare(path, tmp_path / "interactions.parquet", PRESETS["online_retail"])
    raw = pd.read_parquet(path)
    cancelled = raw["InvoiceNo"].str.startswith("C")
    non_positive = ~cancelled & (raw["Quantity"] <= 0)
    service = ~cancelled & ~non_positive & raw["StockCode"].isin(PRESETS["online_retail"].filters[2].value)
    missing = ~cancelled & ~non_positive & ~service & raw["CustomerID"].isna()
    rest = raw[~(cancelled | non_positive | service | missing)]
    duplicates = int(rest.duplicated(subset=["CustomerID", "StockCode", "InvoiceDate"]).sum())
    assert summary.rows_in == len(raw) == 541_909
    assert summary.rejected["cancelled"] == int(cancelled.sum())
    assert summary.rejected["non_positive_quantity"] == int(non_positive.sum())
    assert summary.rejected["non_product"] == int(service.sum())
    assert summary.rejected["missing_customer"] == int(missing.sum())
    assert summary.rejected["duplicate"] == duplicates
    assert summary.kept == len(rest) - duplicates and summary.identity_holds
    assert summary.users == rest["CustomerID"].nunique() and summary.products == rest["StockCode"].nunique()
    assert summary.id_dtypes == {"customer_id": "int32", "product_id": "string"}
    assert len(pd.read_parquet(tmp_path / "quarantine.parquet")) == summary.rows_in - summary.kept


def test_online_retail_readme_facts() -> None:
    readme = (PROJ_ROOT / "data/external/online_retail/README.md").read_text(encoding="utf-8")
    facts = dict(
        re.findall(r"^- ([^:\n]+): (\S.*)$", readme.split("## Measured facts", 1)[1].split("\n## ", 1)[0], flags=re.M)
    )
    raw = pd.read_parquet(PROJ_ROOT / "data/external/online_retail/online_retail.parquet")
    cancelled = raw["InvoiceNo"].str.startswith("C")
    service = ["POST", "DOT", "C2", "M", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"]
    measured = {
        "rows": len(raw),
        "cancellation rows (InvoiceNo starting with C)": int(cancelled.sum()),
        "rows with a negative quantity": int((raw["Quantity"] < 0).sum()),
        "rows with a non-positive quantity that are not cancellations": int(
            ((raw["Quantity"] <= 0) & ~cancelled).sum()
        ),
        "rows without a customer": int(raw["CustomerID"].isna().sum()),
        "exact duplicate rows": int(raw.duplicated().sum()),
        "rows without a description": int(raw["Description"].isna().sum()),
        "distinct customers": int(raw["CustomerID"].nunique()),
        "distinct stock codes": int(raw["StockCode"].nunique()),
        "distinct stock codes ignoring case": int(raw["StockCode"].str.upper().nunique()),
        f"service-code rows ({', '.join(service)})": int(raw["StockCode"].isin(service).sum()),
        "first invoice": raw["InvoiceDate"].min(),
        "last invoice": raw["InvoiceDate"].max(),
    }
    assert set(facts) == set(measured)
    assert {k: str(v) for k, v in measured.items()} == facts


def test_custom_mapping_replaces_the_preset_mapping(tmp_path: Path) -> None:
    # the issue-13 failure: the case_study preset's event mapping stayed active under a custom mapping
    mapping = {
        "customer_id": "CustomerID",
        "product_id": "StockCode",
        "product_name": "Description",
        "event_date": "InvoiceDate",
    }
    spec = source_spec_from_params({"preset": "case_study", "mapping": mapping, "constant_event": "purchased"})
    assert spec.mapping == mapping and spec.name == "case_study+mapping+constant_event"
    summary = prepare(write(tmp_path, ONLINE_RETAIL_CSV), tmp_path / "p.parquet", spec)
    assert summary.kept == 9 and summary.rejected["missing_customer"] == 2 and summary.rejected["duplicate"] == 1
    without_event = source_spec_from_params({"mapping": mapping})
    with pytest.raises(DataContractError, match=r"'event' \(no mapping and no constant_event\)"):
        prepare(write(tmp_path, ONLINE_RETAIL_CSV), tmp_path / "q.parquet", without_event)


def test_preset_none_needs_a_full_mapping() -> None:
    spec = source_spec_from_params(
        {
            "preset": "none",
            "mapping": {"customer_id": "u", "product_id": "p", "event_date": "t"},
            "constant_event": "view",
        }
    )
    assert spec.mapping == {"customer_id": "u", "product_id": "p", "event_date": "t"} and spec.filters == ()
    assert (
        source_spec_from_params(
            {"preset": None, "mapping": {"customer_id": "u", "product_id": "p", "event_date": "t"}}
        ).name
        == "none+mapping"
    )
    with pytest.raises(DataContractError, match="source.preset is none, so source.mapping must map"):
        source_spec_from_params({"preset": "none"})
    with pytest.raises(DataContractError, match=r"source.mapping lacks \['event_date'\]"):
        source_spec_from_params({"preset": "none", "mapping": {"customer_id": "u", "product_id": "p"}})
    with pytest.raises(DataContractError, match=r"unknown canonical column\(s\) \['price'\]"):
        source_spec_from_params({"mapping": {"customer_id": "u", "product_id": "p", "event_date": "t", "price": "x"}})


def test_unknown_source_key_is_named() -> None:
    with pytest.raises(DataContractError, match=r"unknown key\(s\) in source: \['filter'\]"):
        source_spec_from_params({"preset": "online_retail", "filter": []})


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ([{"column": "Quantity", "op": "=>", "value": 0, "reason": "r"}], r"source.filters\[0\].op must be one of"),
        (
            [{"column": "Quantity", "op": ">", "value": "0", "reason": "r"}],
            r"source.filters\[0\].value must be a number for op '>'",
        ),
        (
            [{"column": "Q", "op": "in", "value": "C", "reason": "r"}],
            r"source.filters\[0\].value must be a non-empty list",
        ),
        (
            [{"column": "Q", "op": ">", "value": 0, "reason": "Bad Reason"}],
            r"source.filters\[0\].reason must be a snake_case name",
        ),
        (
            [{"column": "Q", "op": ">", "value": 0, "reason": "duplicate"}],
            r"source.filters\[0\].reason 'duplicate' is a reason prepare gives itself",
        ),
        (
            [{"column": "Q", "op": ">", "value": 0, "reason": "r"}, {"column": "Q", "op": ">", "value": 0}],
            r"source.filters\[1\] lacks key\(s\) \['reason'\]",
        ),
        (
            [{"column": "Q", "op": ">", "value": 0, "reason": "r", "why": "x"}],
            r"unknown key\(s\) in source.filters\[0\]: \['why'\]",
        ),
        ({"column": "Q"}, r"source.filters must be a list"),
    ],
)
def test_bad_filters_name_the_key(filters: object, message: str) -> None:
    with pytest.raises(DataContractError, match=message):
        source_spec_from_params({"preset": "online_retail", "filters": filters})


def test_filter_on_a_missing_column_is_named(tmp_path: Path) -> None:
    spec = source_spec_from_params(
        {"preset": "online_retail", "filters": [{"column": "Qty", "op": ">", "value": 0, "reason": "r"}]}
    )
    with pytest.raises(DataContractError, match=r"source.filters\[0\].column 'Qty' is not a column of the input"):
        prepare(write(tmp_path, ONLINE_RETAIL_CSV), tmp_path / "p.parquet", spec)


def test_filter_comparisons_and_missing_values() -> None:
    values = pd.Series(["5", " -1", "", None, "abc", "C12", "0"], dtype="string[pyarrow]")
    passes = lambda op, value: filter_passes(values, RowFilter("x", op, value, "r")).tolist()  # noqa: E731
    assert passes(">", 0) == [True, False, False, False, False, False, False]
    assert passes("<=", 0) == [False, True, False, False, False, False, True]
    assert passes("==", 0) == [False, False, False, False, False, False, True]
    assert passes("!=", 0) == [
        True,
        True,
        True,
        True,
        True,
        True,
        False,
    ]  # missing / non-numeric satisfy a negative condition
    assert passes("startswith", "C") == [False, False, False, False, False, True, False]
    assert passes("not_startswith", "C") == [True, True, True, True, True, False, True]
    assert passes("in", ("abc", "0")) == [False, False, False, False, True, False, True]
    assert passes("not_in", ("abc", "0")) == [True, True, True, True, False, True, False]
    assert passes("==", "abc") == [False, False, False, False, True, False, False]


def test_float_coded_ids_become_integers_and_others_stay_text() -> None:
    s = lambda *v: pd.Series(list(v), dtype="string[pyarrow]")  # noqa: E731
    assert narrow_ids(s("17850.0", "17851", " 12.")).tolist() == [17850, 17851, 12]
    assert narrow_ids(s("17850.0", "17851")).dtype == "int32"
    assert narrow_ids(s("9000000000.0")).dtype == "int64"
    assert narrow_ids(s("1.5", "2")).tolist() == ["1.5", "2"]
    assert narrow_ids(s("85123A", "17850.0")).tolist() == ["85123A", "17850.0"]


def test_float_and_integer_spellings_of_one_id_are_duplicates(tmp_path: Path) -> None:
    text = "u,p,t\n17850.0,1,2011-01-01 10:00:00\n17850,1.0,2011-01-01 10:00:00\n"
    spec = source_spec_from_params(
        {
            "preset": "none",
            "mapping": {"customer_id": "u", "product_id": "p", "event_date": "t"},
            "constant_event": "purchased",
        }
    )
    summary = prepare(write(tmp_path, text), tmp_path / "p.parquet", spec)
    assert summary.kept == 1 and summary.rejected["duplicate"] == 1


def test_timezone_of_naive_dates() -> None:
    raw = pd.Series(
        [
            "2011-06-09 10:15:00",
            "2011-12-01 08:26:00",
            "2011-06-09 10:15:00+02:00",
            "2011-03-27 01:30:00",
            "2011-10-30 01:30:00",
            "nonsense",
        ],
        dtype="string[pyarrow]",
    )
    got = parse_dates(raw, "iso", "Europe/London")
    assert got.tolist()[:5] == [
        pd.Timestamp("2011-06-09 09:15", tz="UTC"),  # BST
        pd.Timestamp("2011-12-01 08:26", tz="UTC"),  # GMT
        pd.Timestamp("2011-06-09 08:15", tz="UTC"),  # an explicit offset wins
        pd.Timestamp("2011-03-27 01:00", tz="UTC"),  # does not exist in London: moved forward to 02:00 BST
        pd.Timestamp("2011-10-30 01:30", tz="UTC"),  # ambiguous: read as standard time (GMT)
    ]
    assert pd.isna(got.iloc[5]) and str(got.dtype) == "datetime64[us, UTC]"
    assert parse_dates(raw[:2], "iso").tolist() == [
        pd.Timestamp("2011-06-09 10:15", tz="UTC"),
        pd.Timestamp("2011-12-01 08:26", tz="UTC"),
    ]
    with pytest.raises(DataContractError, match="source.timezone must be an IANA time zone"):
        source_spec_from_params({"preset": "online_retail", "timezone": "Mars/Olympus"})
