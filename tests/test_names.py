"""Products without fit rows ranked from their catalogue name: catalogue, token model, content and name_knn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.data.catalogue import Catalogue, read_catalogue
from recsys.features.categories import CategoryParams, fit_categories
from recsys.features.name_index import CategoryIndex, NameIndex, load_name_index
from recsys.features.text import query_tokens
from recsys.rankers import make_ranker
from recsys.rankers.category import CategoryPopularityRanker
from recsys.rankers.content import ContentRanker
from recsys.rankers.name_knn import NameKNNRanker

from _logs import frame, random_log

DAY = "2023-03-01"


def names_log() -> pd.DataFrame:
    """Customers 1-2 buy perfume, 3-4 coffee, 5 olive oil, 6 both perfume and coffee; 7 buys a nameless product."""
    return frame(
        [
            (1, 10, "عطر ورد 50 مل", "purchased", DAY),
            (2, 11, "عطر عود 100 مل", "purchased", DAY),
            (3, 20, "Coffee Gold 250G", "purchased", DAY),
            (4, 21, "Coffee Arabica 500G", "cart", DAY),
            (5, 30, "زيت زيتون 1 لتر", "purchased", DAY),
            (6, 10, "عطر ورد 50 مل", "purchased", "2023-02-01"),
            (6, 20, "Coffee Gold 250G", "purchased", "2023-02-02"),
            (7, 40, None, "purchased", DAY),
        ]
    )


def test_catalogue_from_interactions_keeps_the_first_seen_name() -> None:
    log = frame(
        [
            (1, 5, "later name", "purchased", "2023-03-02"),
            (2, 5, "first name", "purchased", "2023-03-01"),
            (3, 5, "undated name", "wishlist", None),
            (4, 6, "only undated", "wishlist", None),
        ]
    )
    cat = Catalogue.from_interactions(log)
    assert cat.product_ids.tolist() == [5, 6]
    assert cat.names.tolist() == ["first name", "only undated"]
    assert cat.names_of([6, 5, 99]).tolist() == ["only undated", "first name", None]
    assert cat.names_of(["5"]).tolist() == [None]  # another id kind is never a match


def test_read_catalogue_sets_bad_rows_aside_with_reasons(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text(
        "product_id,product_name,first_seen\n"
        "100,عطر جديد,2023-04-01\n"
        ",no id,\n"
        "101,   ,\n"
        f"102,{'x' * 501},\n"
        "103,Coffee New,not a date\n"
        "100,duplicate of 100,\n"
        "abc,not an integer id,\n"
        "104,=HYPERLINK(1),\n",
        encoding="utf-8",
    )
    cat, rejected, report = read_catalogue(path, "int")
    assert cat.product_ids.tolist() == [100, 104]
    assert cat.names.tolist() == ["عطر جديد", "=HYPERLINK(1)"]
    assert report.rows_in == 8 and report.kept == 2
    assert report.rejected == {
        "missing_product": 2,
        "missing_name": 1,
        "name_too_long": 1,
        "bad_date": 1,
        "duplicate": 1,
    }
    assert report.rows_in == report.kept + sum(report.rejected.values())
    assert sorted(rejected["reason"]) == sorted(
        ["missing_product", "missing_product", "missing_name", "name_too_long", "bad_date", "duplicate"]
    )


def test_read_catalogue_names_missing_file_and_columns(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="product_id, product_name"):
        read_catalogue(tmp_path / "absent.csv", "int")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['product_id', 'product_name'\]"):
        read_catalogue(bad, "int")


def test_token_model_vectorises_new_names_over_the_fitted_vocabulary() -> None:
    ranker = make_ranker("content", {"token_user_cap": 100}).fit(names_log())
    assert isinstance(ranker, ContentRanker)
    model = ranker.token_model_
    assert list(model.vocab) == sorted(model.vocab)
    vec = model.vectorise(["عطر مسك جديد", "Brand-new gadget", None, "!!!", "COFFEE gold"])
    assert np.diff(vec.indptr).tolist() == [1, 0, 0, 0, 2]  # only known tokens count
    assert model.tokens_of(vec[0]) == ["عطر"]
    assert sorted(model.tokens_of(vec[4])) == sorted(query_tokens("coffee gold"))
    np.testing.assert_allclose(np.sqrt(vec.multiply(vec).sum(axis=1)).A1, [1, 0, 0, 0, 1])


def brute_content(log: pd.DataFrame, ranker: ContentRanker, name: str, w: float) -> pd.Series:
    """w * x_new . Q_u + (1 - w) * engagement(u) for every fitted customer (postings not truncated)."""
    x = ranker.x_.toarray()
    users = np.sort(log["customer_id"].unique())
    products = np.sort(log["product_id"].unique())
    hist = np.zeros((len(users), len(products)))
    hist[np.searchsorted(users, log["customer_id"]), np.searchsorted(products, log["product_id"])] = 1.0
    profile = hist @ x
    norms = np.linalg.norm(profile, axis=1, keepdims=True)
    profile = np.divide(profile, norms, out=np.zeros_like(profile), where=norms > 0)
    new = ranker.token_model_.vectorise([name]).toarray()[0]
    eng = ranker.features_["engagement"].to_numpy()
    return pd.Series(w * (profile @ new) + (1 - w) * eng, index=pd.Index(users, name="customer_id"))


@pytest.mark.parametrize("cold_weight", [None, 0.9])
def test_content_ranks_a_new_product_from_its_catalogue_name(cold_weight: float | None) -> None:
    log = random_log(n_rows=2000, n_users=200, n_products=50, seed=11)
    ranker = make_ranker(
        "content", {"affinity_weight": 0.4, "cold_affinity_weight": cold_weight, "token_user_cap": 10**6}
    ).fit(log)
    assert isinstance(ranker, ContentRanker)
    catalogue = Catalogue.build([900, 901, 902], ["عطر 009 جديد", "Gadget Pro", "زيت زيتون 250مل"])
    out = ranker.rank([900, 901, 902, 903], 15, catalogue)
    assert out.basis.tolist() == ["name", "no_known_token", "name", "no_name"]  # type: ignore[union-attr]
    assert out.cold_start.tolist() == [True, True, True, True]
    frame_ = out.to_frame()
    w = 0.4 if cold_weight is None else cold_weight
    for pid, name in ((900, "عطر 009 جديد"), (902, "زيت زيتون 250مل")):
        table = brute_content(log, ranker, name, w).rename("s").reset_index()
        table = table.sort_values(["s", "customer_id"], ascending=[False, True])
        got = frame_[frame_["product_id"] == pid]
        assert got["customer_id"].tolist() == table["customer_id"].head(15).tolist()
        np.testing.assert_allclose(got["score"], table["s"].head(15), rtol=1e-12)
    eng = ranker.features_["engagement"].sort_values(ascending=False, kind="stable")
    for pid in (901, 903):  # no usable name: the engagement order, plain engagement scores
        got = frame_[frame_["product_id"] == pid]
        assert got["customer_id"].tolist() == eng.index[:15].tolist()


def test_a_new_perfume_goes_to_perfume_buyers_first() -> None:
    log = names_log()
    ranker = make_ranker("content", {"affinity_weight": 0.9, "token_user_cap": 100}).fit(log)
    out = ranker.rank([99], 3, Catalogue.build([99], ["عطر ياسمين 30 مل"])).to_frame()
    assert set(out["customer_id"].head(3)) == {1, 2, 6}


def test_rankers_that_do_not_read_names_say_so() -> None:
    log = names_log()
    catalogue = Catalogue.build([99], ["عطر ياسمين"])
    for name in ("activity", "popularity", "itemknn"):
        out = make_ranker(name).fit(log).rank([10, 99], 3, catalogue)
        assert out.basis.tolist() == ["history", "names_unused"]  # type: ignore[union-attr]
        assert out.cold_start.tolist() == [False, True]


def test_name_knn_scores_customers_by_their_share_of_similar_products() -> None:
    log = names_log()
    w = 0.8
    ranker = make_ranker("name_knn", {"neighbours": 2, "neighbour_weight": w}).fit(log)
    assert isinstance(ranker, NameKNNRanker)
    vec = ranker.token_model_.vectorise(["عطر ورد 100 مل"])
    row, nbr, sim = ranker.neighbours(vec, np.array([-1]))
    x = ranker.x_.toarray()
    cos = x @ vec.toarray()[0]
    best = np.lexsort((np.arange(len(cos)), -cos))[:2]
    assert nbr.tolist() == best.tolist()
    np.testing.assert_allclose(sim, cos[best])
    out = ranker.rank([99], 7, Catalogue.build([99], ["عطر ورد 100 مل"])).to_frame()
    products = ranker.history_.product_ids[best]
    share = {}
    for c in np.sort(log["customer_id"].unique()):
        touched = set(log.loc[log["customer_id"] == c, "product_id"])
        share[c] = sum(s for p, s in zip(products, cos[best], strict=True) if p in touched) / cos[best].sum()
    eng = ranker.features_["engagement"]
    expected = pd.Series({c: w * share[c] + (1 - w) * eng.loc[c] for c in share}, name="s")
    table = expected.rename_axis("customer_id").reset_index().sort_values(["s", "customer_id"], ascending=[False, True])
    assert out["customer_id"].tolist() == table["customer_id"].head(7).tolist()
    np.testing.assert_allclose(out["score"], table["s"].head(7), rtol=1e-12)


def test_name_knn_never_counts_a_product_as_its_own_neighbour() -> None:
    log = names_log()
    ranker = make_ranker("name_knn", {"neighbours": 3}).fit(log)
    assert isinstance(ranker, NameKNNRanker)
    codes = ranker.history_.codes_of(np.array([10, 20]))
    row, nbr, _ = ranker.neighbours(ranker.x_[codes], codes)
    assert len(nbr) > 0 and not np.any(nbr == codes[row])


def test_invariants_hold_for_catalogue_products_with_exclusion_rows() -> None:
    log = random_log(n_rows=1500, n_users=150, n_products=40, seed=3)
    undated = log["event_date"].isna()
    only_excluded = int(log.loc[undated, "product_id"].iloc[0])
    fit, exclude = log[~undated & (log["product_id"] != only_excluded)], log[undated]
    catalogue = Catalogue.build([only_excluded, 5000], ["عطر 003", "Coffee 100G"])
    for name in ("content", "name_knn"):
        params: dict[str, Any] = {"token_user_cap": 30} if name == "content" else {"neighbours": 5}
        ranker = make_ranker(name, params).fit(fit, exclude=exclude)
        out = ranker.rank([only_excluded, 5000], 40, catalogue)
        frame_ = out.to_frame()
        wished = set(exclude.loc[exclude["product_id"] == only_excluded, "customer_id"])
        assert not wished & set(frame_.loc[frame_["product_id"] == only_excluded, "customer_id"])
        assert out.basis.tolist() == ["name", "name"]  # type: ignore[union-attr]
        for _, block in frame_.groupby("product_id"):
            assert block["rank"].tolist() == list(range(1, len(block) + 1))
            assert (np.diff(block["score"].to_numpy()) <= 0).all()


@pytest.mark.parametrize("name", ["content", "name_knn"])
def test_exported_name_index_scores_a_new_name_exactly_as_the_ranker(name: str, tmp_path: Path) -> None:
    log = random_log(n_rows=2500, n_users=250, n_products=60, seed=21)
    params: dict[str, Any] = (
        {"affinity_weight": 0.5, "cold_affinity_weight": 0.8, "token_user_cap": 40}
        if name == "content"
        else {"neighbours": 4, "cold_neighbour_weight": 0.7, "token_product_cap": 30}
    )
    ranker = make_ranker(name, params).fit(log)
    names = ["عطر 005 فاخر", "Coffee Gold 1KG", "Gadget Pro"]
    catalogue = Catalogue.build([9001, 9002, 9003], names)
    expected = ranker.rank([9001, 9002, 9003], 25, catalogue)
    index = ranker.name_index("label")  # type: ignore[attr-defined]
    index.save(tmp_path / "names")
    loaded = NameIndex.load(tmp_path / "names")
    assert loaded.meta == index.meta and loaded.meta.method == ("affinity" if name == "content" else "neighbours")
    got = loaded.audiences(names, 25)
    for i, audience in enumerate(got):
        lo, hi = expected.offsets[i], expected.offsets[i + 1]
        assert loaded.customer_ids[audience.customers].tolist() == expected.customer_ids[lo:hi].tolist()
        np.testing.assert_allclose(audience.scores, expected.scores[lo:hi], rtol=1e-12)
        assert audience.basis == expected.basis[i]  # type: ignore[index]
        for score, ev in zip(audience.scores, audience.evidence, strict=True):  # the parts add up to the score
            assert ev.engagement + ev.name == pytest.approx(score, rel=1e-9, abs=1e-12)
    assert got[2].basis == "no_known_token" and got[2].unknown_tokens == ["gadget", "pro"]


def test_name_evidence_is_true_of_the_log() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=70, seed=8)
    content = make_ranker("content", {"cold_affinity_weight": 0.9, "token_user_cap": 1000}).fit(log)
    knn = make_ranker("name_knn", {"neighbours": 5, "cold_neighbour_weight": 0.9}).fit(log)
    history = log.groupby("customer_id")["product_name"].apply(lambda s: set(s.dropna().astype(str)))
    touched = log.groupby("customer_id")["product_id"].apply(set)
    name = "زيت زيتون 750مل عضوي"
    query = set(query_tokens(name))
    c_index = content.name_index()  # type: ignore[attr-defined]
    (aud,) = c_index.audiences([name], 40)
    assert set(aud.known_tokens) <= query and set(aud.unknown_tokens) == {"750", "عضوي"} - set(aud.known_tokens)
    for code, ev in zip(aud.customers, aud.evidence, strict=True):
        cid = c_index.customer_ids[code]
        own_tokens = {t for n in history.get(cid, set()) for t in query_tokens(n)}
        for token, part in ev.tokens:
            assert token in query and token in own_tokens and part > 0  # the token really is in their history
    k_index = knn.name_index()  # type: ignore[attr-defined]
    (aud,) = k_index.audiences([name], 40)
    assert aud.similar and all(sim > 0 for _, sim in aud.similar)
    for p, _ in aud.similar:  # a similar product shares a token with the name
        assert set(query_tokens(k_index.product_name(p))) & query
    for code, ev in zip(aud.customers, aud.evidence, strict=True):
        cid = k_index.customer_ids[code]
        for p, part in ev.products:
            assert k_index.product_ids[p] in touched.get(cid, set()) and part > 0  # they really touched it


def test_name_index_excludes_customers_and_refuses_a_missing_file(tmp_path: Path) -> None:
    log = names_log()
    ranker = make_ranker("content", {"affinity_weight": 0.9, "token_user_cap": 100}).fit(log)
    index = ranker.name_index()  # type: ignore[attr-defined]
    (aud,) = index.audiences(["عطر ياسمين"], 3, exclude=[1, 999, "x"])
    ids = index.customer_ids[aud.customers].tolist()
    assert 1 not in ids and set(ids) == {2, 6, ids[-1]}
    index.save(tmp_path, prefix="names.")
    assert NameIndex.exists(tmp_path, "names.") and not NameIndex.exists(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(index.files("names."))
    assert NameIndex.load(tmp_path, "names.").digest() == index.digest()
    (tmp_path / "names.idf.npy").unlink()
    with pytest.raises(FileNotFoundError, match="idf"):
        NameIndex.load(tmp_path, "names.")


def test_category_model_categorises_logged_and_new_names_alike() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=70, seed=12)
    table, model = fit_categories(log, CategoryParams(k=4, components=5, n_init=2))
    first = Catalogue.from_interactions(log)
    one_name = log.groupby("product_id")["product_name"].nunique() == 1  # products logged under a single name
    ids = [p for p in first.product_ids if one_name.get(p, False)]
    expected = table.set_index("product_id").loc[ids, "category"].to_numpy()
    assert model.categories_of(list(first.names_of(ids))).tolist() == expected.tolist()
    assert model.categories_of(["", "!!!", "Gadget"]).tolist() == [-1, -1, -1]


def test_category_popularity_ranks_a_new_product_in_the_category_its_name_gives() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=70, seed=12)
    ranker = make_ranker("category_popularity", {"categories": {"k": 4, "components": 5, "n_init": 2}}).fit(log)
    assert isinstance(ranker, CategoryPopularityRanker)
    name = "زيت زيتون 2 لتر"
    cat = int(ranker.category_model_.categories_of([name])[0])
    assert cat >= 0
    out = ranker.rank([9001, 9002, 9003], 30, Catalogue.build([9001, 9002], [name, "Gadget"]))
    assert out.basis.tolist() == ["name", "no_known_token", "no_name"]  # type: ignore[union-attr]
    frame_ = out.to_frame()
    got = frame_[frame_["product_id"] == 9001]
    rows = log.assign(c=ranker.product_category_[ranker.history_.codes_of(log["product_id"].to_numpy())])
    in_cat = rows[rows["c"] == cat].groupby("customer_id").size()
    top = got["customer_id"].tolist()[: min(10, len(in_cat))]
    assert set(top) <= set(in_cat.index)  # the first customers all have history in that category
    np.testing.assert_allclose(got["score"].to_numpy()[: len(top)], in_cat.loc[top].to_numpy())


@pytest.mark.parametrize("name", ["category_popularity", "category_share"])
def test_category_index_ranks_a_new_name_exactly_as_the_ranker(name: str, tmp_path: Path) -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=70, seed=12)
    ranker = make_ranker(name, {"categories": {"k": 4, "components": 5, "n_init": 2}}).fit(log)
    names = ["زيت زيتون 2 لتر", "عطر 001 جديد", "Gadget"]
    expected = ranker.rank([9001, 9002, 9003], 40, Catalogue.build([9001, 9002, 9003], names))
    index = ranker.name_index("label")  # type: ignore[attr-defined]
    index.save(tmp_path, "x_")
    loaded = load_name_index(tmp_path, "x_")
    assert isinstance(loaded, CategoryIndex) and loaded.digest() == index.digest()
    got = loaded.audiences(names, 40)
    for i, audience in enumerate(got):
        lo, hi = expected.offsets[i], expected.offsets[i + 1]
        assert loaded.customer_ids[audience.customers].tolist() == expected.customer_ids[lo:hi].tolist()
        np.testing.assert_allclose(audience.scores, expected.scores[lo:hi])
        assert audience.basis == expected.basis[i]  # type: ignore[index]
    assert got[0].category >= 0 and got[0].category_tokens and got[2].category == -1
    cat = got[0].category
    for p, _ in got[0].similar:  # the listed products are of the name's category
        assert loaded.product_category[p] == cat
    (aud,) = loaded.audiences([names[0]], 10, exclude=[int(loaded.customer_ids[got[0].customers[0]])])
    assert got[0].customers[0] not in aud.customers
