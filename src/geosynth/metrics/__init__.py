"""Is the synthetic data any good? Exact kNN manifold metrics and rarity (:mod:`.knn`,
:mod:`.manifold`, :mod:`.rarity`; split across ranks under torchrun), Fréchet distance and KID
(:mod:`.frechet`), per-class colour fidelity in pixels and latents (:mod:`.color`, :mod:`.pixels`),
SAR amplitude and GLCM texture in native units (:mod:`.sar`), map fidelity (:mod:`.paired`),
CLIP score (:mod:`.clipscore`), the whole ``geosynth evaluate`` report (:mod:`.evaluation`) and
rarity-vs-accuracy correlation (:mod:`.correlate`)."""

from geosynth.metrics.evaluation import evaluate
from geosynth.metrics.frechet import fid, frechet_distance, kid
from geosynth.metrics.knn import knn_radii, knn_sqradii
from geosynth.metrics.manifold import manifold_metrics
from geosynth.metrics.rarity import rarity_report

__all__ = [
    "evaluate",
    "fid",
    "frechet_distance",
    "kid",
    "knn_radii",
    "knn_sqradii",
    "manifold_metrics",
    "rarity_report",
]
