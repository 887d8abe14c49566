"""Why a product was ranked the way it was (its basis), and how long a product name may be (no dependencies).

Every basis but ``history`` is a cold start (the product has no fit rows). The service imports this module.
"""

from __future__ import annotations

BASIS_TEXT: dict[str, str] = {
    "history": "ranked from the product's own history",
    "name": "a new product, ranked from its catalogue name",
    "no_name": "a new product without a catalogue name: ranked by the engagement order",
    "no_known_token": "a new product whose name has no token seen in the log: ranked by the engagement order",  # nosec B105 # a description, not a password
    "names_unused": "a new product; this ranker does not read names: its global order",
}
BASES: tuple[str, ...] = tuple(BASIS_TEXT)
MAX_NAME_CHARS = 500  # longer catalogue names are set aside (files) or refused (API)
