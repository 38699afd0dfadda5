"""The alloys an order can be made of: names, display words and nominal densities.

The one list every service and page uses. Pricing versions its own densities and prices (a quote
names the configuration it used); these nominal densities are its defaults and what an estimate
shown before pricing uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AlloyName = Literal["gold_585", "gold_750", "silver_925", "platinum_950"]


@dataclass(frozen=True)
class Alloy:
    name: str
    words: str  # what a customer reads
    density_g_cm3: float
    # Thinner walls than this do not fill or break in casting (a jeweller's usual minimum).
    min_wall_mm: float


ALLOYS: dict[str, Alloy] = {
    "gold_585": Alloy("gold_585", "Gold 585 (14k)", 13.0, 0.7),
    "gold_750": Alloy("gold_750", "Gold 750 (18k)", 15.5, 0.7),
    "silver_925": Alloy("silver_925", "Sterling silver 925", 10.36, 0.8),
    "platinum_950": Alloy("platinum_950", "Platinum 950", 20.7, 0.6),
}
ALLOY_NAMES: tuple[str, ...] = tuple(ALLOYS)

ALLOY_WORDS: dict[str, str] = {name: alloy.words for name, alloy in ALLOYS.items()}
DENSITIES_G_CM3: dict[str, float] = {name: alloy.density_g_cm3 for name, alloy in ALLOYS.items()}
