"""A bilingual catalogue lexicon: groups of words (English, Arabic) that name the same thing, for search expansion.

The packaged groups are ``recsys/resources/lexicon.yaml`` (typed: ``LexiconFile``, unknown keys rejected); callers
add their own (the dashboard's ``params/dashboard.yaml: dashboard.search.lexicon``). Every term is folded and split
into words like a query (``recsys.features.text.query_tokens``, the folding of product names), so "Perfume",
"PERFUME" and "perfume" are one term, "أرز" matches "ارز" and "t-shirt" is "t shirt".

``Lexicon.expand(query)`` splits a query into units — the longest lexicon phrase starting at each token ("olive
oil", "زيت زيتون"), else one token — and gives each unit the other terms of every group it belongs to (both
directions; a Latin word ending in "s" whose singular is a term counts as that term). ``unit_pattern`` is the RE2
pattern that finds those other terms as whole words in a folded name (an Arabic term may carry the article "ال",
a Latin term a plural "s"/"es"); the unit as typed keeps matching anywhere in a name, as search always did.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from recsys.features.text import query_tokens

RESOURCE = "lexicon.yaml"
_BOUNDARY = r"[^\p{L}\p{N}]"


class LexiconFile(BaseModel):
    """The packaged lexicon file: a version and groups of synonymous terms (two or more each)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    groups: list[list[str]] = Field(min_length=1)


@dataclass(frozen=True)
class Unit:
    """One unit of a query: the folded text as typed and the other terms the lexicon gives it."""

    text: str
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lexicon:
    """Groups of folded terms and, per term, every other term of the groups it is in."""

    groups: tuple[tuple[str, ...], ...]
    others: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    longest: int = field(default=1, compare=False)

    @classmethod
    def from_groups(cls, groups: Sequence[Sequence[str]]) -> Lexicon:
        """A lexicon of the given groups (terms folded; empty terms dropped; a group needs two distinct terms)."""
        folded: list[tuple[str, ...]] = []
        for group in groups:
            terms = tuple(dict.fromkeys(t for t in (" ".join(query_tokens(str(x))) for x in group) if t))
            if len(terms) < 2:
                raise ValueError(f"a lexicon group needs at least two distinct terms, got {list(group)!r}")
            folded.append(terms)
        others: dict[str, set[str]] = {}
        for terms in folded:
            for t in terms:
                others.setdefault(t, set()).update(x for x in terms if x != t)
        longest = max((len(t.split()) for terms in folded for t in terms), default=1)
        return cls(tuple(folded), {t: tuple(sorted(v)) for t, v in others.items()}, longest)

    @classmethod
    def packaged(cls, extra: Sequence[Sequence[str]] = ()) -> Lexicon:
        """The lexicon shipped with the package (recsys/resources/lexicon.yaml) plus `extra` groups."""
        return cls.from_groups([*packaged_groups(), *extra])

    def alternatives(self, term: str) -> tuple[str, ...]:
        """The other terms of a folded term's groups (its singular's, for a Latin plural in s)."""
        if term in self.others:
            return self.others[term]
        if term.endswith("s") and term[:-1] in self.others and term[:-1].isascii():
            return tuple(x for x in self.others[term[:-1]] if x != term)
        return ()

    def expand(self, query: str) -> list[Unit]:
        """The query's units in order, each with its alternatives (the longest lexicon phrase wins)."""
        tokens = query_tokens(query)
        units: list[Unit] = []
        i = 0
        while i < len(tokens):
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                text = " ".join(tokens[i : i + n])
                alternatives = self.alternatives(text)
                if alternatives or n == 1:
                    units.append(Unit(text, alternatives))
                    i += n
                    break
        return units


@cache
def packaged_groups() -> tuple[tuple[str, ...], ...]:
    """The groups of the packaged lexicon file (validated; read once)."""
    text = resources.files("recsys.resources").joinpath(RESOURCE).read_text(encoding="utf-8")
    parsed = LexiconFile.model_validate(yaml.safe_load(text))
    return tuple(tuple(str(t) for t in g) for g in parsed.groups)


def unit_pattern(unit: Unit) -> str | None:
    """RE2 pattern finding any of the unit's alternatives as a whole word of a folded name (None without any)."""
    if not unit.alternatives:
        return None
    terms = "|".join(
        f"{_BOUNDARY}+".join(re.escape(word) for word in t.split())
        for t in sorted(unit.alternatives, key=len, reverse=True)
    )
    return f"(^|{_BOUNDARY})(ال)?({terms})(s|es)?({_BOUNDARY}|$)"
