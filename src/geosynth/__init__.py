"""geosynth: synthetic satellite, aerial and SAR training data with diffusion models.

The library is usable without the command line; every subcommand is a thin wrapper over the
functions exported by the sub-packages (``geosynth.data``, ``geosynth.artifacts``, ``geosynth.toy``,
``geosynth.diffusion``).
"""

__version__ = "0.1.0"

from geosynth.errors import GeosynthError

__all__ = ["GeosynthError", "__version__"]
