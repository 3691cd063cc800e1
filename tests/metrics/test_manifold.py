"""Exact metrics against independent references: the prdc package and brute force in float64."""

import numpy as np
import pytest
import torch
from prdc import compute_prdc

from geosynth.metrics.knn import knn_radii
from geosynth.metrics.manifold import manifold_metrics


def _data(n: int, m: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, d)).astype(np.float32)
    fake = (rng.normal(size=(m, d)) * 1.2 + 0.3).astype(np.float32)
    # Duplicates inside each set and across sets: zero distances and tied radii.
    real[10:13] = real[5]
    real[40] = real[41]
    fake[20:22] = fake[3]
    fake[30] = real[7]
    fake[31] = real[5]
    return real, fake


def _brute(real: np.ndarray, fake: np.ndarray, k: int, rk: int):
    r64, f64 = real.astype(np.float64), fake.astype(np.float64)
    drr = np.sqrt(((r64[:, None] - r64[None]) ** 2).sum(-1))
    dff = np.sqrt(((f64[:, None] - f64[None]) ** 2).sum(-1))
    drf = np.sqrt(((r64[:, None] - f64[None]) ** 2).sum(-1))
    rad = np.sort(drr, axis=1)
    return rad[:, k], rad[:, rk], np.sort(dff, axis=1)[:, k], drf


def test_knn_radii_equal_brute_force() -> None:
    real, _ = _data(300, 40, 12, seed=1)
    radii = knn_radii(torch.from_numpy(real), [3, 5], block=64)
    r5, r3, _, _ = _brute(real, real[:10], 5, 3)
    np.testing.assert_allclose(radii[5].numpy(), r5, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(radii[3].numpy(), r3, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("n", "m", "d", "k", "blocks"),
    [
        (400, 300, 16, 5, (64, 50)),
        (250, 500, 8, 3, (1000, 1000)),
        (300, 120, 64, 10, (33, 17)),
    ],
)
def test_prdc_equals_prdc_package(n: int, m: int, d: int, k: int, blocks) -> None:
    real, fake = _data(n, m, d, seed=n + m)
    expected = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    res = manifold_metrics(
        torch.from_numpy(real),
        torch.from_numpy(fake),
        k=k,
        block_ref=blocks[0],
        block_tgt=blocks[1],
    ).summary()
    for key in ("precision", "recall", "density", "coverage"):
        assert res[key] == pytest.approx(float(expected[key]), rel=1e-5), key


def test_rarity_equals_brute_force() -> None:
    real, fake = _data(350, 200, 10, seed=7)
    _, r3, _, drf = _brute(real, fake, 5, 3)
    inside = drf < r3[:, None]
    scores = np.where(inside, r3[:, None], np.inf).min(0)
    res = manifold_metrics(
        torch.from_numpy(real), torch.from_numpy(fake), k=5, rarity_k=3, block_ref=61, block_tgt=47
    )
    np.testing.assert_allclose(res.rarity.numpy(), scores, rtol=1e-12)
    s = res.summary()
    finite = scores[np.isfinite(scores)]
    assert s["rarity_fraction_inside"] == pytest.approx(finite.size / scores.size)
    assert s["rarity_mean"] == pytest.approx(finite.mean(), rel=1e-12)
    assert s["rarity_median"] == pytest.approx(np.median(finite), rel=1e-12) or (
        # torch's median of an even count is the lower middle value
        s["rarity_median"] == pytest.approx(np.sort(finite)[(finite.size - 1) // 2])
    )


def test_per_class_adds_up_and_matches_subsets() -> None:
    real, fake = _data(300, 240, 8, seed=3)
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 3, 240))
    res = manifold_metrics(
        torch.from_numpy(real),
        torch.from_numpy(fake),
        k=5,
        rarity_k=3,
        target_labels=labels,
        num_classes=3,
        block_ref=70,
        block_tgt=64,
    )
    overall = res.summary()
    per = [res.summary(mask=labels == c, cls=c) for c in range(3)]
    sizes = np.array([p["n_target"] for p in per])
    assert sizes.sum() == 240
    for key in ("precision", "density", "rarity_fraction_inside"):
        weighted = sum(p[key] * s for p, s in zip(per, sizes, strict=True)) / sizes.sum()
        assert weighted == pytest.approx(overall[key], rel=1e-12), key
    for c in range(3):
        sub = fake[(labels == c).numpy()]
        expected = compute_prdc(real_features=real, fake_features=sub, nearest_k=5)
        for key in ("precision", "recall", "density", "coverage"):
            assert per[c][key] == pytest.approx(float(expected[key]), rel=1e-5), (c, key)


def test_lifted_range_search_equals_blocked_pass() -> None:
    """The lifted formulation is a second, independent exact method: same per-sample results."""
    from geosynth.metrics.lifted import lifted_manifold_metrics

    real, fake = _data(400, 300, 16, seed=5)
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 3, 300))
    args = (torch.from_numpy(real), torch.from_numpy(fake))
    a = manifold_metrics(*args, target_labels=labels, num_classes=3, block_ref=97, block_tgt=64)
    b = lifted_manifold_metrics(*args, target_labels=labels, num_classes=3)
    for field in (
        "ball_counts",
        "rarity",
        "covered",
        "recalled",
        "covered_by_class",
        "recalled_by_class",
    ):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
