"""Model families: one place knows what differs between Stable Diffusion 1.x/2.x and SDXL.

:class:`ModelFamily` (:mod:`.base`) is the interface; :mod:`.sd` and :mod:`.sdxl` implement it;
:func:`detect_family` reads a model's family from its files (:mod:`.files`), :func:`family_of`
from a loaded pipeline, :func:`family_named` from a card. Commands and the training and sampling
loops call the family they are given and never ask which one it is, so the next family (a
flow-matching model, say) is one more implementation.
"""

from geosynth.diffusion.family.base import ModelFamily, PromptEmbeds
from geosynth.diffusion.family.detect import (
    FAMILIES,
    RUNS,
    check_family,
    detect_family,
    family_named,
    family_of,
)

__all__ = [
    "FAMILIES",
    "RUNS",
    "ModelFamily",
    "PromptEmbeds",
    "check_family",
    "detect_family",
    "family_named",
    "family_of",
]
