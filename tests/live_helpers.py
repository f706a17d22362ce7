"""Texts for the tests of a changing index (hot reload, watch mode); `docs` in conftest."""

from __future__ import annotations

LIGHTHOUSE = "The lighthouse keeper lit the lamp every evening at dusk.\n"
ORCHARD = "The orchard grows forty kinds of apples on the southern slope.\n"
