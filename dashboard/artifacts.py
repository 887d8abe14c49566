"""The artifacts the dashboard shows, loaded once: prepared log, audience cache, feature params.

``DashboardData.load`` reads the prepared Parquet and opens the audience cache (memory-mapped), then
derives the product index (search), per-customer activity and served exposure counts (audience table)
and the what-if engine (the rankers' own re-score API, fitted on the same log and params as the cache;
the frequency-cap what-if is ``dashboard.exposure``).
A missing or unreadable artifact leaves a message naming the fix in ``issues`` instead of raising.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dashboard.audience import AudienceResult, UserActivity, audience_frame, diff_audiences, empty_users, user_activity
from dashboard.exposure import SERVED, CapChoice, ExposureCounts, cap_whatif, resolve_cap
from dashboard.memory import release_unused_memory
from dashboard.search import ProductHistory, ProductIndex
from dashboard.settings import CACHE_HINT, PREPARED_HINT, DashboardPaths, DashboardSettings, dashboard_settings
from dashboard.whatif import WHATIF_RANKERS, WhatIfEngine, WhatIfSettings
from recsys import config
from recsys.cache.lookup import AudienceLookup, CacheError, CacheNotFoundError
from recsys.cache.manifest import ServedFigures
from recsys.data.ids import id_array
from recsys.features.engagement import FeatureParams, compute_raw_features
from recsys.lexicon import Lexicon


@dataclass
class DashboardData:
    """Artifacts loaded once at start; missing ones leave a friendly message in `issues` instead of raising."""

    paths: DashboardPaths
    feature_params: FeatureParams = field(default_factory=FeatureParams)
    seed: int = 0
    products: ProductIndex | None = None
    users: UserActivity | None = None
    whatif: WhatIfEngine | None = None
    ranker_params: dict[str, Any] = field(default_factory=dict)
    lookup: AudienceLookup | None = None
    exposure: ExposureCounts = field(default_factory=lambda: ExposureCounts.from_lookup(None))
    issues: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    reference_date: str | None = None
    load_seconds: float = 0.0
    settings: DashboardSettings = field(default_factory=DashboardSettings)
    lexicon: Lexicon | None = None  # the bilingual search lexicon (packaged + params/dashboard.yaml's groups)

    @property
    def ready(self) -> bool:
        """True when products and users are loaded (the panels can work)."""
        return self.products is not None and self.whatif is not None

    @property
    def n_max(self) -> int:
        """Deepest audience the dashboard offers: the cache's N (100 without a cache)."""
        return int(self.lookup.n) if self.lookup is not None else 100

    @property
    def served_cap(self) -> int | None:
        """The frequency cap the cache's audiences were allocated under (None: uncapped, or no cache)."""
        return self.lookup.manifest.allocation.max_exposures if self.lookup is not None else None

    @property
    def served_figures(self) -> ServedFigures | None:
        """What is measured of the served configuration (the manifest's; None without a cache)."""
        return self.lookup.manifest.served if self.lookup is not None else None

    @property
    def served_label(self) -> str | None:
        """The evaluated model whose test figures are the served configuration's (None when not measured)."""
        figures = self.served_figures
        return figures.model if figures is not None and figures.status == "measured" else None

    @property
    def cache_ranker(self) -> str | None:
        """Ranker that built the cache, if any."""
        return self.lookup.manifest.ranker if self.lookup is not None else None

    @property
    def whatif_ranker(self) -> str:
        """The ranker the what-if starts from: the cache's when it can be re-scored, else activity."""
        return self.cache_ranker if self.cache_ranker in WHATIF_RANKERS else "activity"

    def params_for(self, ranker: str) -> dict[str, Any]:
        """make_ranker params of `ranker`: the cache's own for its ranker; else its params/cache.yaml block with the
        cache's feature params and seed (so only the ranker differs from the cache)."""
        if ranker == self.cache_ranker and self.ranker_params:
            return dict(self.ranker_params)
        try:
            own = dict((config.load_params("cache").get("rankers") or {}).get(ranker) or {})
        except FileNotFoundError:
            own = {}
        base = {"seed": self.seed, "features": self.ranker_params.get("features") or {}}
        return {**base, **own}

    def default_settings(self) -> WhatIfSettings:
        """Settings that reproduce the cache (its ranker when the what-if can re-score it, else activity)."""
        return WhatIfSettings.from_params(self.whatif_ranker, self.params_for(self.whatif_ranker))

    @classmethod
    def load(cls, paths: DashboardPaths | None = None) -> DashboardData:
        """Load the prepared log, derive per-user/per-product tables, open the cache; never raises for missing files."""
        t0 = time.perf_counter()
        paths = paths or DashboardPaths.from_env()
        data = cls(paths=paths)
        data._load_cache()
        data._load_settings()
        data._load_params()
        data._load_prepared()
        release_unused_memory()
        data.load_seconds = time.perf_counter() - t0
        return data

    def _load_cache(self) -> None:
        """Open the audience cache (memory-mapped) or note how to build it."""
        try:
            self.lookup = AudienceLookup.open(self.paths.cache_dir)
            self.exposure = ExposureCounts.from_lookup(self.lookup)
        except CacheNotFoundError:
            self.issues.append(f"Audience cache not found at {config.relative(self.paths.cache_dir)}: {CACHE_HINT}.")
        except CacheError as exc:  # corrupt or incomplete: its message names the path and the rebuild command
            self.issues.append(f"Audience cache unusable: {exc}")

    def _load_settings(self) -> None:
        """The dashboard's own params (params/dashboard.yaml) and the search lexicon; a bad file is an issue."""
        try:
            self.settings = dashboard_settings()
            self.lexicon = Lexicon.packaged(self.settings.search.lexicon)
        except ValueError as exc:
            self.issues.append(f"{exc} (search runs without the lexicon's extra groups)")
            self.lexicon = Lexicon.packaged()

    def _load_params(self) -> None:
        """Feature params and seed: those the cache was built with, else params/*.yaml."""
        manifest_params: dict[str, Any] = dict(self.lookup.manifest.ranker_params) if self.lookup is not None else {}
        try:
            file_features = config.load_params("features")
            file_seed = int((config.load_params("cache").get("cache") or {}).get("seed", 0))
        except FileNotFoundError:
            file_features, file_seed = {}, 0
        self.feature_params = FeatureParams.from_params(manifest_params.get("features") or file_features)
        self.seed = int(manifest_params.get("seed", file_seed))
        self.ranker_params = dict(manifest_params) or {"seed": self.seed, "features": file_features}
        if manifest_params.get("features") and FeatureParams.from_params(file_features) != self.feature_params:
            self.notes.append(
                "params/features.yaml differs from the params the cache was built with; the what-if "
                f"starts from the cache's params. Rebuild the cache to serve the new ones ({CACHE_HINT})."
            )

    def _load_prepared(self) -> None:
        """Read the prepared table once and build the product index, user activity and what-if model."""
        from recsys.data.contract import DataContractError, load_prepared

        if not self.paths.prepared.is_file():
            self.issues.insert(
                0, f"Prepared interactions not found at {config.relative(self.paths.prepared)}: {PREPARED_HINT}."
            )
            return
        try:
            df = load_prepared(self.paths.prepared)
        except (DataContractError, OSError, ValueError) as exc:
            self.issues.insert(
                0,
                f"Prepared interactions at {config.relative(self.paths.prepared)} are unreadable ({exc}): "
                f"{PREPARED_HINT}.",
            )
            return
        self._check_fingerprint()
        raw = compute_raw_features(df, self.feature_params)
        self.reference_date = raw.attrs.get("reference_date")
        ucodes = np.searchsorted(id_array(raw.index.to_numpy()), id_array(df["customer_id"].to_numpy()))
        self.products = ProductIndex.build(df, ucodes.astype(np.int64))
        self.users = user_activity(df, ucodes, raw)
        self.whatif = WhatIfEngine(df, {name: self.params_for(name) for name in WHATIF_RANKERS})
        self.counts = {"interactions": len(df), "customers": len(raw), "products": len(self.products.product_ids)}

    def _check_fingerprint(self) -> None:
        """Note when the cache was built from another prepared file."""
        if self.lookup is None:
            return
        fp = self.lookup.manifest.fingerprint
        if fp.algorithm == "sha256-file":
            from recsys.cache.writer import fingerprint_file

            if fingerprint_file(self.paths.prepared) != fp.value:
                self.notes.append(
                    f"The cache was built from a different prepared file than {config.relative(self.paths.prepared)}; "
                    f"cached audiences may be stale ({CACHE_HINT})."
                )

    def present_events(self) -> list[str]:
        """Event types that occur in the data (the what-if offers a weight for each)."""
        if self.users is None:
            return []
        totals = self.users.event_counts.sum(axis=0)
        return [c for c, t in zip(self.users.categories, totals, strict=True) if t > 0]

    def product_history(self, product_id: Any) -> ProductHistory | None:
        """History of a product, None when cold start (or nothing loaded)."""
        return self.products.history(product_id) if self.products is not None else None

    def audience(
        self, product_id: Any, n: int, settings: WhatIfSettings | None = None, cap: CapChoice = SERVED
    ) -> AudienceResult:
        """The cached top-n when settings and cap are as served, else the what-if top-n; the cached list as baseline.

        Under a cap (the served one with changed settings, or another) the what-if list is the per-product
        approximation of ``dashboard.exposure.cap_whatif``; uncapped it is the ranker's own top-n (exact).
        """
        t0 = time.perf_counter()
        n = max(1, min(int(n), self.n_max))
        settings = settings or self.default_settings()
        limit = resolve_cap(cap, self.served_cap)
        baseline, cold = None, True
        if self.lookup is not None:
            cached, cached_scores, cold = self.lookup.top(product_id, n)
            baseline = id_array(cached)
        held: np.ndarray | None = None
        as_served = limit == self.served_cap and settings.close_to(self.default_settings())
        if baseline is not None and as_served:
            customers, scores, source, ranker = baseline, np.asarray(cached_scores), "cache", self.cache_ranker
        elif self.whatif is not None:
            engine = self.whatif
            source, ranker = "what-if", settings.ranker
            if limit is None:
                customers, scores, cold = engine.rank(settings, product_id, n)
            else:
                served_list = np.zeros(0, dtype=np.int64)
                if self.lookup is not None and self.lookup.known(product_id):  # the cold-start fallback is no audience
                    served_list = self.lookup.top(product_id, self.lookup.n)[0]
                capped = cap_whatif(
                    lambda depth: engine.rank(settings, product_id, depth),
                    id_array(served_list),
                    self.exposure,
                    limit,
                    n,
                    max_depth=self.counts.get("customers", n),
                )
                customers, scores, cold, held = capped.customers, capped.scores, capped.cold_start, capped.held_out
        else:
            customers, scores, source, ranker = np.zeros(0, dtype=np.int64), np.zeros(0), "none", settings.ranker
        diff = diff_audiences(baseline, customers) if baseline is not None and source == "what-if" else None
        return AudienceResult(
            product_id,
            customers,
            scores,
            bool(cold),
            source,
            str(ranker),
            baseline,
            time.perf_counter() - t0,
            diff,
            cap=limit if source == "what-if" else self.served_cap,
            approximate=held is not None,
            held_out=held,
            served_cap=self.served_cap,
        )

    def audience_table(self, result: AudienceResult) -> pd.DataFrame:
        """The result as the displayed/exported table (with each customer's served exposure count)."""
        users = self.users or empty_users()
        return audience_frame(
            result.customers,
            result.scores,
            users,
            result.baseline if result.source == "what-if" else None,
            self.exposure.of(result.customers),
        )
