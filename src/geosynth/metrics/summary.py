"""The report's headline numbers: overall and per compared class, for tables and plots."""

from __future__ import annotations

from typing import Any


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers (overall, and a row per compared class) for tables and plots."""

    def g(path: tuple[str, ...], src: dict[str, Any] | None = None) -> Any:
        cur: Any = report if src is None else src
        for p in path:
            if not isinstance(cur, dict) or p not in cur or cur[p] is None:
                return None
            cur = cur[p]
        return cur

    columns = {
        "fid": ("fid", "value"),
        "kid": ("kid", "mean"),
        "precision": ("prdc", "metrics", "precision"),
        "recall": ("prdc", "metrics", "recall"),
        "density": ("prdc", "metrics", "density"),
        "coverage": ("prdc", "metrics", "coverage"),
        "rarity": ("prdc", "metrics", "rarity_mean"),
        "color_error": ("color", "mean_abs_error"),
        "latent_color_error": ("latent_color", "mean_abs_error"),
        "amplitude_w1": ("amplitude", "wasserstein1"),
        "amplitude_kl": ("amplitude", "kl_log_amplitude"),
        "glcm_distance": ("glcm", "distance"),
        "clip_score": ("clip", "synthetic", "clip_score"),
        "clip_score_real": ("clip", "real", "clip_score"),
    }
    per_class_paths = {
        "fid": ("fid", "per_class", "{c}", "value"),
        "kid": ("kid", "per_class", "{c}", "mean"),
        "precision": ("prdc", "per_class", "{c}", "precision"),
        "recall": ("prdc", "per_class", "{c}", "recall"),
        "density": ("prdc", "per_class", "{c}", "density"),
        "coverage": ("prdc", "per_class", "{c}", "coverage"),
        "rarity": ("prdc", "per_class", "{c}", "rarity_mean"),
        "color_error": ("color", "per_class", "{c}", "abs_error"),
        "latent_color_error": ("latent_color", "per_class", "{c}", "abs_error"),
        "amplitude_w1": ("amplitude", "per_class", "{c}", "wasserstein1"),
        "amplitude_kl": ("amplitude", "per_class", "{c}", "kl_log_amplitude"),
        "glcm_distance": ("glcm", "per_class", "{c}", "distance"),
        "clip_score": ("clip", "per_class", "{c}", "synthetic", "clip_score"),
        "clip_score_real": ("clip", "per_class", "{c}", "real", "clip_score"),
    }
    overall = {k: g(p) for k, p in columns.items()}
    present = [k for k, v in overall.items() if v is not None]
    per_class = {}
    for c in report.get("classes", {}).get("compared", []):
        per_class[c] = {
            k: g(tuple(p.replace("{c}", c) for p in per_class_paths[k])) for k in present
        }
    return {"overall": {k: overall[k] for k in present}, "per_class": per_class}
