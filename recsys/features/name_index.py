"""The served side of what names reveal: TF-IDF vectors of names over a fitted vocabulary (numpy, scipy, pyarrow).

No pandas: the service scores a new product's name with it (``/audiences/by-name``). ``TokenModel`` is the
vocabulary (sorted, fixed-width text, memory-mappable), its idf and ``vectorise(names)``; the rankers that read
names (recsys.rankers.names) fit it and score with the same functions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recsys.arrays import offsets_of, range_indices, sparse_topk, unique_sorted
from recsys.data.ids import parse_id
from recsys.features.text import tokenize_names


def row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Scale every row to unit L2 norm (empty rows stay empty)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


def idf_weights(x: sp.csr_matrix, n_docs: int | None = None) -> np.ndarray:
    """Smoothed idf of every column of a binary (products x tokens) matrix: ln((1+P)/(1+df)) + 1, P = n_docs."""
    n = x.shape[0] if n_docs is None else int(n_docs)
    df = np.bincount(x.indices, minlength=x.shape[1])
    idf: np.ndarray = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return idf


@dataclass(frozen=True)
class TokenModel:
    """Sorted token vocabulary, its idf, and the TF-IDF rows of the fitted products (history code order)."""

    vocab: np.ndarray
    idf: np.ndarray
    products: sp.csr_matrix

    @classmethod
    def from_matrix(cls, x: sp.csr_matrix, vocab: np.ndarray, n_docs: int) -> TokenModel:
        """The model of a binary (products x tokens) matrix over `vocab` (any order) with `n_docs` documents."""
        order = np.argsort(np.asarray(vocab, dtype=str), kind="stable")
        sorted_vocab = np.asarray(vocab, dtype=str)[order] if len(vocab) else np.zeros(0, dtype="<U1")
        x = sp.csr_matrix(x[:, order]) if len(vocab) else sp.csr_matrix((x.shape[0], 0))
        idf = idf_weights(x, n_docs)
        return cls(sorted_vocab, idf, row_normalise(sp.csr_matrix(x @ sp.diags(idf))))

    @property
    def n_tokens(self) -> int:
        """Vocabulary size."""
        return int(len(self.vocab))

    def token_codes(self, tokens: np.ndarray) -> np.ndarray:
        """Vocabulary code of each token (-1 when unknown)."""
        if len(tokens) == 0 or self.n_tokens == 0:
            return np.full(len(tokens), -1, dtype=np.int64)
        t = np.asarray(tokens, dtype=str)
        pos = np.minimum(np.searchsorted(self.vocab, t), self.n_tokens - 1)
        return np.where(self.vocab[pos] == t, pos, -1).astype(np.int64)

    def vectorise(self, names: Sequence[Any] | np.ndarray) -> sp.csr_matrix:
        """TF-IDF rows of arbitrary names over this vocabulary (unknown tokens ignored; None gives an empty row)."""
        arr = np.asarray([n if isinstance(n, str) else None for n in names], dtype=object)
        parents, tokens = tokenize_names(arr)
        codes = self.token_codes(tokens)
        keep = codes >= 0
        keys = unique_sorted(parents[keep] * max(self.n_tokens, 1) + codes[keep])
        row, col = np.divmod(keys, max(self.n_tokens, 1))
        m = sp.csr_matrix((self.idf[col], (row, col)), shape=(len(arr), self.n_tokens))
        return row_normalise(m)

    def tokens_of(self, row: sp.csr_matrix) -> list[str]:
        """The vocabulary tokens of one sparse row."""
        return [str(t) for t in self.vocab[row.indices]]


# ----------------------------------------------------------------------------------------------
# signals and the blended top-k: the one implementation the rankers and the service share
# ----------------------------------------------------------------------------------------------


def affinity_signal(vectors: sp.csr_matrix, token_customers: sp.csr_matrix) -> sp.csr_matrix:
    """(rows x customers) name-token affinity: sum over tokens t of vector[t] * posting[t, u] (the content signal)."""
    return sp.csr_matrix(vectors @ token_customers)


def top_neighbours(
    vectors: sp.csr_matrix, token_products: sp.csr_matrix, k: int, self_codes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, product code, cosine) of every row's `k` most similar known products (ties: lower code), not itself."""
    sim = sp.csr_matrix(vectors @ token_products)
    row = np.repeat(np.arange(vectors.shape[0], dtype=np.int64), np.diff(sim.indptr))
    prod = sim.indices.astype(np.int64)
    keep = sim.data > 0
    if self_codes is not None:
        keep &= prod != np.asarray(self_codes, dtype=np.int64)[row]
    sizes, nbr, val = sparse_topk(row[keep], prod[keep], sim.data[keep], vectors.shape[0], int(k))
    return np.repeat(np.arange(vectors.shape[0], dtype=np.int64), sizes), nbr, val


def neighbour_shares(row: np.ndarray, sim: np.ndarray, n_rows: int) -> np.ndarray:
    """Each neighbour's share of its row's summed similarity."""
    total = np.bincount(row, weights=sim, minlength=n_rows)
    return sim / total[row] if len(row) else sim


def neighbour_signal(
    vectors: sp.csr_matrix,
    token_products: sp.csr_matrix,
    product_customers: sp.csr_matrix,
    k: int,
    self_codes: np.ndarray | None = None,
) -> sp.csr_matrix:
    """(rows x customers) similarity-weighted share of each row's `k` neighbours that a customer touched (name_knn)."""
    row, nbr, sim = top_neighbours(vectors, token_products, k, self_codes)
    shares = neighbour_shares(row, sim, vectors.shape[0])
    weights = sp.csr_matrix((shares, (row, nbr)), shape=(vectors.shape[0], product_customers.shape[0]))
    return sp.csr_matrix(weights @ product_customers)


Allowed = Callable[[np.ndarray, np.ndarray], np.ndarray]


def blend_top(
    k: int,
    weights: np.ndarray,
    signal: sp.csr_matrix,
    engagement: np.ndarray,
    fallback: tuple[np.ndarray, np.ndarray, np.ndarray],
    allowed: Allowed,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of w * signal(u) + (1 - w) * engagement(u) per row (sizes, customer codes, scores).

    `fallback` = (sizes, customers, engagement) of every row's best k allowed customers by engagement alone (signal
    0): their k-th blended score bounds the result from below, so weaker signal candidates are dropped first.
    `allowed(row, customer)` masks the signal candidates a row may not get (its own customers, excluded ones).
    """
    n_rows = signal.shape[0]
    f_sizes, f_user, f_score = fallback
    f_row = np.repeat(np.arange(n_rows, dtype=np.int64), f_sizes)
    f_score = (1.0 - weights[f_row]) * f_score
    floor = np.full(n_rows, -np.inf)
    full = f_sizes == k
    floor[full] = f_score[offsets_of(f_sizes)[1:][full] - 1]
    a_row = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(signal.indptr))
    a_user = signal.indices.astype(np.int64)
    a_score = weights[a_row] * signal.data + (1.0 - weights[a_row]) * engagement[a_user]
    keep = (signal.data > 0) & (a_score >= floor[a_row])
    a_row, a_user, a_score = a_row[keep], a_user[keep], a_score[keep]
    ok = allowed(a_row, a_user)
    a_row, a_user, a_score = a_row[ok], a_user[ok], a_score[ok]
    n_users = len(engagement)
    f_keys = f_row * n_users + f_user
    a_keys = np.sort(a_row * n_users + a_user)
    dup = np.zeros(len(f_keys), dtype=bool)
    if len(a_keys):
        dup = a_keys[np.minimum(np.searchsorted(a_keys, f_keys), len(a_keys) - 1)] == f_keys
    row = np.concatenate([a_row, f_row[~dup]])
    user = np.concatenate([a_user, f_user[~dup]])
    score = np.concatenate([a_score, f_score[~dup]])
    return sparse_topk(row, user, score, n_rows, k)


# ----------------------------------------------------------------------------------------------
# the served name index: a fitted name ranker's state as memory-mappable arrays
# ----------------------------------------------------------------------------------------------

Method = Literal["affinity", "neighbours", "engagement", "category"]
NAME_INDEX_ARRAYS: tuple[str, ...] = (
    "vocab",
    "idf",
    "token_customers_indptr",
    "token_customers_indices",
    "token_customers_data",
    "token_products_indptr",
    "token_products_indices",
    "token_products_data",
    "product_customers_indptr",
    "product_customers_indices",
    "engagement",
    "engagement_order",
    "customer_ids",
    "product_ids",
    "product_names",
    "product_name_offsets",
)
META_NAME = "meta.json"
MAX_EVIDENCE = 5  # tokens / similar products listed per customer


@dataclass(frozen=True)
class NameIndexMeta:
    """How the index scores a name: the ranker it was exported from, its method, weight and neighbour count."""

    ranker: str
    label: str | None
    method: Method
    weight: float
    neighbours: int

    def to_json(self) -> str:
        """Sorted-key JSON (equal content gives equal bytes)."""
        return json.dumps(asdict(self), sort_keys=True, indent=2) + "\n"


@dataclass(frozen=True)
class Evidence:
    """Why one customer is in a new product's audience: parts that add up to its score."""

    engagement: float  # (1 - w) * engagement(u)
    name: float  # w * signal(u, p)
    tokens: list[tuple[str, float]]  # content: the name's tokens in the customer's history, with their share of `name`
    products: list[tuple[int, float]]  # name_knn: the similar products the customer touched (index, share of `name`)


@dataclass(frozen=True)
class NameAudience:
    """The audience of one name: customers (codes) best first with scores and evidence, and what the name matched."""

    name: str
    basis: str  # 'name' (ranked from its tokens) or 'no_known_token' (the engagement order)
    known_tokens: list[str]
    unknown_tokens: list[str]
    customers: np.ndarray
    scores: np.ndarray
    evidence: list[Evidence]
    similar: list[tuple[int, float]]  # the most similar known products (index into product_ids, cosine / customers)
    category: int = -1  # category indexes: the category the name was given (-1: none)
    category_tokens: list[str] = field(default_factory=list)  # the tokens that weigh most in that category


def _csr(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray | None, shape: tuple[int, int]) -> sp.csr_matrix:
    """A CSR matrix over given (possibly memory-mapped) arrays; binary when data is None."""
    values = np.ones(len(indices), dtype=np.float64) if data is None else data
    return sp.csr_matrix((values, indices, indptr), shape=shape, copy=False)


@dataclass
class NameIndex:
    """The arrays that score a name never seen in the log, exactly as the fitted name ranker would."""

    meta: NameIndexMeta
    tokens: TokenModel
    token_customers: sp.csr_matrix  # tokens x customers: the content ranker's truncated posting weights
    token_products: sp.csr_matrix  # tokens x known products: TF-IDF weights (truncated postings)
    product_customers: sp.csr_matrix  # known products x customers (binary: who touched it in the fit rows)
    engagement: np.ndarray
    engagement_order: np.ndarray  # customer codes by descending engagement, ties by ascending code
    customer_ids: np.ndarray
    product_ids: np.ndarray
    product_names: np.ndarray  # utf-8 bytes of every product's name, concatenated
    product_name_offsets: np.ndarray

    @property
    def n_customers(self) -> int:
        """Customers the index can rank."""
        return int(len(self.engagement))

    def product_name(self, index: int) -> str:
        """The name of a known product (as it was first seen)."""
        a, b = int(self.product_name_offsets[index]), int(self.product_name_offsets[index + 1])
        return bytes(self.product_names[a:b]).decode("utf-8")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, by file name (NAME_INDEX_ARRAYS)."""
        return {
            "vocab": self.tokens.vocab,
            "idf": self.tokens.idf,
            "token_customers_indptr": self.token_customers.indptr,
            "token_customers_indices": self.token_customers.indices,
            "token_customers_data": self.token_customers.data,
            "token_products_indptr": self.token_products.indptr,
            "token_products_indices": self.token_products.indices,
            "token_products_data": self.token_products.data,
            "product_customers_indptr": self.product_customers.indptr,
            "product_customers_indices": self.product_customers.indices,
            "engagement": self.engagement,
            "engagement_order": self.engagement_order,
            "customer_ids": self.customer_ids,
            "product_ids": self.product_ids,
            "product_names": self.product_names,
            "product_name_offsets": self.product_name_offsets,
        }

    def files(self, prefix: str = "") -> list[str]:
        """The file names `save` writes (every array, then the meta file)."""
        return [*(f"{prefix}{key}.npy" for key in NAME_INDEX_ARRAYS), f"{prefix}{META_NAME}"]

    def save(self, directory: Path, prefix: str = "") -> None:
        """Write every array as <prefix><name>.npy (fsynced) and <prefix>meta.json into `directory` (created)."""
        save_arrays(directory, prefix, self.arrays(), self.meta)

    def digest(self) -> str:
        """sha256 over the meta and every array (name, dtype, shape, bytes): what the index serves."""
        return arrays_digest(self.meta, self.arrays())

    @classmethod
    def exists(cls, directory: Path, prefix: str = "") -> bool:
        """Whether an index was saved into `directory` with `prefix` (its meta file is there)."""
        return (directory / f"{prefix}{META_NAME}").is_file()

    @classmethod
    def load(cls, directory: Path, prefix: str = "", mmap: bool = True) -> NameIndex:
        """Open an index written by `save` (arrays memory-mapped read-only); a clear error names a missing file."""
        meta, a = load_arrays(directory, prefix, NAME_INDEX_ARRAYS, mmap)
        n_tokens, n_users, n_products = len(a["vocab"]), len(a["engagement"]), len(a["product_ids"])
        empty = sp.csr_matrix((0, n_tokens))
        return cls(
            meta=meta,
            tokens=TokenModel(np.asarray(a["vocab"]), np.asarray(a["idf"]), empty),
            token_customers=_csr(
                a["token_customers_indptr"],
                a["token_customers_indices"],
                a["token_customers_data"],
                (n_tokens, n_users),
            ),
            token_products=_csr(
                a["token_products_indptr"],
                a["token_products_indices"],
                a["token_products_data"],
                (n_tokens, n_products),
            ),
            product_customers=_csr(
                a["product_customers_indptr"], a["product_customers_indices"], None, (n_products, n_users)
            ),
            engagement=a["engagement"],
            engagement_order=a["engagement_order"],
            customer_ids=a["customer_ids"],
            product_ids=a["product_ids"],
            product_names=a["product_names"],
            product_name_offsets=a["product_name_offsets"],
        )

    def customer_codes(self, customer_ids: Sequence[Any]) -> np.ndarray:
        """Codes of the given customer ids that the index knows (ids of another kind or unknown are dropped)."""
        return known_codes(self.customer_ids, customer_ids)

    def _signal(self, vectors: sp.csr_matrix) -> sp.csr_matrix:
        """The exported ranker's signal of every row (an empty matrix for the engagement method)."""
        if self.meta.method == "affinity":
            return affinity_signal(vectors, self.token_customers)
        if self.meta.method == "neighbours":
            return neighbour_signal(vectors, self.token_products, self.product_customers, self.meta.neighbours)
        return sp.csr_matrix((vectors.shape[0], self.n_customers))

    def _fallback(self, n_rows: int, k: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row's best k customers by engagement alone, excluded customers skipped."""
        head = np.asarray(self.engagement_order[: k + len(excluded)], dtype=np.int64)
        head = head[~np.isin(head, excluded)][:k]
        sizes = np.full(n_rows, len(head), dtype=np.int64)
        return sizes, np.tile(head, n_rows), np.tile(np.asarray(self.engagement)[head], n_rows)

    def audiences(self, names: Sequence[str], k: int, exclude: Sequence[Any] = ()) -> list[NameAudience]:
        """The top-k audience of every name with its evidence (one vectorised pass for the whole batch)."""
        vectors = self.tokens.vectorise(list(names))
        known = np.diff(vectors.indptr) > 0
        weight = self.meta.weight if self.meta.method != "engagement" else 0.0
        weights = np.where(known, weight, 0.0)
        excluded = self.customer_codes(exclude)
        engagement = np.asarray(self.engagement)

        def allowed(row: np.ndarray, user: np.ndarray) -> np.ndarray:
            ok: np.ndarray = ~np.isin(user, excluded)
            return ok

        signal = self._signal(vectors)
        sizes, users, scores = blend_top(
            int(k), weights, signal, engagement, self._fallback(len(names), k, excluded), allowed
        )
        offsets = offsets_of(sizes)
        row_n, nbr, sim = top_neighbours(vectors, self.token_products, max(self.meta.neighbours, MAX_EVIDENCE))
        out = []
        for i, name in enumerate(names):  # per requested name (a handful): evidence for its k customers
            cust = users[offsets[i] : offsets[i + 1]]
            vec = vectors[i]
            parents, tokens = tokenize_names([name])
            codes = self.tokens.token_codes(tokens)
            mine = row_n == i
            out.append(
                NameAudience(
                    name=name,
                    basis="name" if known[i] and self.meta.method != "engagement" else "no_known_token",
                    known_tokens=sorted({str(t) for t, c in zip(tokens, codes, strict=True) if c >= 0}),
                    unknown_tokens=sorted({str(t) for t, c in zip(tokens, codes, strict=True) if c < 0}),
                    customers=cust,
                    scores=scores[offsets[i] : offsets[i + 1]],
                    evidence=self.evidence(vec, cust, float(weights[i]), nbr[mine], sim[mine]),
                    similar=[
                        (int(p), float(s))
                        for p, s in zip(nbr[mine][:MAX_EVIDENCE], sim[mine][:MAX_EVIDENCE], strict=True)
                    ],
                )
            )
        return out

    def evidence(
        self, vector: sp.csr_matrix, customers: np.ndarray, weight: float, neighbours: np.ndarray, sims: np.ndarray
    ) -> list[Evidence]:
        """Per customer: engagement part, name part, and the tokens / similar products behind the name part.

        The parts add up to the customer's score: engagement + sum of the token (or product) contributions.
        """
        n = len(customers)
        order = np.argsort(customers, kind="stable")
        sorted_c = np.asarray(customers, dtype=np.int64)[order]
        eng = (1.0 - weight) * np.asarray(self.engagement)[customers] if n else np.zeros(0)
        pos_t = np.zeros(0, dtype=np.int64)
        label_t = np.zeros(0, dtype=np.int64)
        part_t = np.zeros(0)
        if self.meta.method == "affinity" and vector.nnz and n:
            starts = self.token_customers.indptr[vector.indices]
            ends = self.token_customers.indptr[vector.indices + 1]
            idx = range_indices(starts, ends - starts)
            token_of = np.repeat(np.arange(vector.nnz), ends - starts)
            users = np.asarray(self.token_customers.indices[idx], dtype=np.int64)
            at = np.minimum(np.searchsorted(sorted_c, users), n - 1)
            hit = sorted_c[at] == users
            pos_t = order[at[hit]]
            label_t = vector.indices[token_of[hit]].astype(np.int64)
            part_t = weight * vector.data[token_of[hit]] * np.asarray(self.token_customers.data[idx])[hit]
        if self.meta.method == "neighbours" and len(neighbours) and n:
            top, top_sim = neighbours[: self.meta.neighbours], sims[: self.meta.neighbours]
            shares = top_sim / top_sim.sum()
            starts, ends = self.product_customers.indptr[top], self.product_customers.indptr[top + 1]
            idx = range_indices(starts, ends - starts)
            nbr_of = np.repeat(np.arange(len(top)), ends - starts)
            users = np.asarray(self.product_customers.indices[idx], dtype=np.int64)
            at = np.minimum(np.searchsorted(sorted_c, users), n - 1)
            hit = sorted_c[at] == users
            pos_t = order[at[hit]]
            label_t = top[nbr_of[hit]].astype(np.int64)
            part_t = weight * shares[nbr_of[hit]]
        name_part = np.bincount(pos_t, weights=part_t, minlength=n) if n else np.zeros(0)
        rank = np.lexsort((label_t, -part_t, pos_t))
        pos_t, label_t, part_t = pos_t[rank], label_t[rank], part_t[rank]
        first = np.searchsorted(pos_t, np.arange(n + 1))
        parts = [
            list(zip(label_t[a:b][:MAX_EVIDENCE].tolist(), part_t[a:b][:MAX_EVIDENCE].tolist(), strict=True))
            for a, b in zip(first[:-1], first[1:], strict=True)
        ]
        is_tokens = self.meta.method == "affinity"
        return [
            Evidence(
                engagement=float(eng[j]),
                name=float(name_part[j]),
                tokens=[(str(self.tokens.vocab[t]), w) for t, w in parts[j]] if is_tokens else [],
                products=[] if is_tokens else parts[j],
            )
            for j in range(n)
        ]


def names_blob(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Names as one utf-8 byte array and offsets (memory-mappable text)."""
    encoded = [n.encode("utf-8") for n in names]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


# ----------------------------------------------------------------------------------------------
# categories inferred from names: the assignment (fitted in recsys.features.categories), served without sklearn
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryModel:
    """The fitted name-category inference as arrays: kept-token TF-IDF, LSA components and k-means centres.

    ``assign`` is the one assignment of both the fitted products and new names: project on the components,
    L2-normalise, nearest centre (squared Euclidean, ties: the lower category). Without components (fewer than 2
    categories could be fitted) every named row is category 0.
    """

    tokens: TokenModel
    components: np.ndarray  # (dimensions x tokens)
    centers: np.ndarray  # (categories x dimensions)

    def assign(self, vectors: sp.csr_matrix) -> np.ndarray:
        """Category of each TF-IDF row (-1 for an empty row)."""
        out = np.full(vectors.shape[0], -1, dtype=np.int64)
        named = np.flatnonzero(np.diff(vectors.indptr) > 0)
        if len(named) == 0 or len(self.centers) == 0:
            return out
        if self.components.shape[0] == 0:
            out[named] = 0
            return out
        z = np.asarray(vectors[named] @ self.components.T, dtype=np.float64)
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        z = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)
        d2 = (self.centers**2).sum(axis=1)[None, :] - 2.0 * (z @ self.centers.T)
        out[named] = np.argmin(d2, axis=1)
        return out

    def categories_of(self, names: Sequence[Any]) -> np.ndarray:
        """Category of each name (-1 when it has no kept token): how a new product's name is categorised."""
        return self.assign(self.tokens.vectorise(list(names)))


CATEGORY_INDEX_ARRAYS: tuple[str, ...] = (
    "vocab",
    "idf",
    "components",
    "centers",
    "lists_indptr",
    "lists_users",
    "lists_scores",
    "fallback_order",
    "customer_ids",
    "product_ids",
    "product_category",
    "category_products_indptr",
    "category_products",
    "product_names",
    "product_name_offsets",
)
CATEGORY_TOKENS = 5  # tokens shown to describe a category


@dataclass
class CategoryIndex:
    """A fitted category ranker's state (``category_popularity`` / ``category_share``) that ranks any name.

    A name is categorised (``CategoryModel.assign``); its audience is the category's customers by score (rows in the
    category, or share x P(return)), then the ranker's fallback order with score 0, excluded customers skipped:
    exactly the ranker's answer for a product without fit rows. Evidence: each customer's score in that category;
    the similar products are the category's products with the most customers.
    """

    meta: NameIndexMeta
    model: CategoryModel
    lists_indptr: np.ndarray
    lists_users: np.ndarray
    lists_scores: np.ndarray
    fallback_order: np.ndarray
    customer_ids: np.ndarray
    product_ids: np.ndarray
    product_category: np.ndarray
    category_products_indptr: np.ndarray
    category_products: np.ndarray  # per category, its product codes by descending customers
    product_names: np.ndarray
    product_name_offsets: np.ndarray

    @property
    def n_customers(self) -> int:
        """Customers the index can rank."""
        return int(len(self.fallback_order))

    def product_name(self, index: int) -> str:
        """The name of a known product (as it was first seen)."""
        a, b = int(self.product_name_offsets[index]), int(self.product_name_offsets[index + 1])
        return bytes(self.product_names[a:b]).decode("utf-8")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, by file name (CATEGORY_INDEX_ARRAYS)."""
        return {
            "vocab": self.model.tokens.vocab,
            "idf": self.model.tokens.idf,
            "components": self.model.components,
            "centers": self.model.centers,
            "lists_indptr": self.lists_indptr,
            "lists_users": self.lists_users,
            "lists_scores": self.lists_scores,
            "fallback_order": self.fallback_order,
            "customer_ids": self.customer_ids,
            "product_ids": self.product_ids,
            "product_category": self.product_category,
            "category_products_indptr": self.category_products_indptr,
            "category_products": self.category_products,
            "product_names": self.product_names,
            "product_name_offsets": self.product_name_offsets,
        }

    def files(self, prefix: str = "") -> list[str]:
        """The file names `save` writes."""
        return [*(f"{prefix}{key}.npy" for key in CATEGORY_INDEX_ARRAYS), f"{prefix}{META_NAME}"]

    def save(self, directory: Path, prefix: str = "") -> None:
        """Write every array (fsynced) and the meta file into `directory` (created)."""
        save_arrays(directory, prefix, self.arrays(), self.meta)

    def digest(self) -> str:
        """sha256 over the meta and every array."""
        return arrays_digest(self.meta, self.arrays())

    @classmethod
    def load(cls, directory: Path, prefix: str = "", mmap: bool = True) -> CategoryIndex:
        """Open an index written by `save` (memory-mapped); a clear error names a missing file."""
        meta, a = load_arrays(directory, prefix, CATEGORY_INDEX_ARRAYS, mmap)
        n_tokens = len(a["vocab"])
        tokens = TokenModel(np.asarray(a["vocab"]), np.asarray(a["idf"]), sp.csr_matrix((0, n_tokens)))
        model = CategoryModel(tokens, np.asarray(a["components"]), np.asarray(a["centers"]))
        return cls(
            meta,
            model,
            *(a[k] for k in CATEGORY_INDEX_ARRAYS[4:]),
        )

    def customer_codes(self, customer_ids: Sequence[Any]) -> np.ndarray:
        """Codes of the given customer ids that the index knows."""
        return known_codes(self.customer_ids, customer_ids)

    def top_products(self, category: int) -> np.ndarray:
        """The category's products with the most customers (at most MAX_EVIDENCE; none for -1)."""
        if category < 0:
            return np.zeros(0, dtype=np.int64)
        a, b = int(self.category_products_indptr[category]), int(self.category_products_indptr[category + 1])
        return np.asarray(self.category_products[a:b][:MAX_EVIDENCE], dtype=np.int64)

    def category_tokens(self, category: int) -> list[str]:
        """The tokens that weigh most in a category's centre (back-projected through the components)."""
        if category < 0 or self.model.components.shape[0] == 0:
            return []
        weights = self.model.centers[category] @ self.model.components
        top = np.argsort(-weights, kind="stable")[:CATEGORY_TOKENS]
        return [str(self.model.tokens.vocab[t]) for t in top if weights[t] > 0]

    def audiences(self, names: Sequence[str], k: int, exclude: Sequence[Any] = ()) -> list[NameAudience]:
        """The top-k audience of every name: its category's list, then the fallback order (score 0)."""
        vectors = self.model.tokens.vectorise(list(names))
        cats = self.model.assign(vectors)
        excluded = self.customer_codes(exclude)
        order = np.asarray(self.fallback_order, dtype=np.int64)
        out = []
        for i, name in enumerate(names):  # per requested name (a handful)
            c = int(cats[i])
            users = np.zeros(0, dtype=np.int64)
            scores = np.zeros(0)
            if c >= 0:
                a, b = int(self.lists_indptr[c]), int(self.lists_indptr[c + 1])
                users = np.asarray(self.lists_users[a:b], dtype=np.int64)
                scores = np.asarray(self.lists_scores[a:b], dtype=np.float64)
                keep = ~np.isin(users, excluded)
                users, scores = users[keep][:k], scores[keep][:k]
            need = k - len(users)
            if need > 0:
                head = order[: need + len(excluded) + len(users)]
                head = head[~np.isin(head, excluded) & ~np.isin(head, users)][:need]
                users = np.concatenate([users, head])
                scores = np.concatenate([scores, np.zeros(len(head))])
            _, tokens = tokenize_names([name])
            codes = self.model.tokens.token_codes(tokens)
            top = self.top_products(c)
            out.append(
                NameAudience(
                    name=name,
                    basis="name" if c >= 0 else "no_known_token",
                    known_tokens=sorted({str(t) for t, cc in zip(tokens, codes, strict=True) if cc >= 0}),
                    unknown_tokens=sorted({str(t) for t, cc in zip(tokens, codes, strict=True) if cc < 0}),
                    customers=users,
                    scores=scores,
                    evidence=[Evidence(engagement=0.0, name=float(v), tokens=[], products=[]) for v in scores],
                    similar=[(int(p), 0.0) for p in top],
                    category=c,
                    category_tokens=self.category_tokens(c),
                )
            )
        return out


def save_arrays(directory: Path, prefix: str, arrays: dict[str, np.ndarray], meta: NameIndexMeta) -> None:
    """Write arrays as <prefix><key>.npy (fsynced) and <prefix>meta.json into `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        with (directory / f"{prefix}{key}.npy").open("wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
    (directory / f"{prefix}{META_NAME}").write_text(meta.to_json(), encoding="utf-8")


def arrays_digest(meta: NameIndexMeta, arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the meta and every array (name, dtype, shape, bytes)."""
    h = hashlib.sha256(meta.to_json().encode("utf-8"))
    for key, array in arrays.items():
        arr = np.ascontiguousarray(array)
        h.update(f"{key}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.data.cast("B"))
    return h.hexdigest()


def load_arrays(
    directory: Path, prefix: str, keys: Sequence[str], mmap: bool
) -> tuple[NameIndexMeta, dict[str, np.ndarray]]:
    """The meta and the memory-mapped arrays of an index; a clear error names missing files."""
    wanted = [*(f"{prefix}{key}.npy" for key in keys), f"{prefix}{META_NAME}"]
    missing = [name for name in wanted if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"name index at {directory} lacks {missing}; rebuild it (recsys build-cache)")
    mode: Literal["r"] | None = "r" if mmap else None
    arrays = {k: np.load(directory / f"{prefix}{k}.npy", mmap_mode=mode, allow_pickle=False) for k in keys}
    meta = NameIndexMeta(**json.loads((directory / f"{prefix}{META_NAME}").read_text(encoding="utf-8")))
    return meta, arrays


def known_codes(index_ids: np.ndarray, customer_ids: Sequence[Any]) -> np.ndarray:
    """Codes (positions in the sorted `index_ids`) of the given ids that are there; other kinds or unknown dropped."""
    if len(customer_ids) == 0 or len(index_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    kind = "int" if index_ids.dtype.kind in "iu" else "str"
    parsed = [p for p in (parse_id(raw, kind) for raw in customer_ids) if p is not None]
    if not parsed:
        return np.zeros(0, dtype=np.int64)
    ids = np.asarray(parsed, dtype=np.int64 if kind == "int" else str)
    pos = np.minimum(np.searchsorted(index_ids, ids), len(index_ids) - 1)
    return np.unique(pos[index_ids[pos] == ids]).astype(np.int64)


AnyNameIndex = NameIndex | CategoryIndex


def load_name_index(directory: Path, prefix: str = "", mmap: bool = True) -> AnyNameIndex:
    """The index saved with `prefix` in `directory`: a category index or a name-token index, from its meta file."""
    meta_path = directory / f"{prefix}{META_NAME}"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no name index at {directory} ({prefix}{META_NAME} missing)")
    method = json.loads(meta_path.read_text(encoding="utf-8")).get("method")
    if method == "category":
        return CategoryIndex.load(directory, prefix, mmap)
    return NameIndex.load(directory, prefix, mmap)
