"""``geosynth filter --classifier clip:REF``: zero-shot CLIP with the class prompts as the
off-class criterion (the issue's second kind of classifier), checked against open_clip run
directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geosynth.toy import make_toy_clip, make_toy_dataset

CLASSES = ["forest", "water", "urban"]
TEMPLATE = "an aerial view of {}"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_clip(tmp_path_factory.mktemp("filter-clip") / "clip")


def _reference(clip: Path, synth: Path) -> tuple[torch.Tensor, list[int]]:
    """Zero-shot probabilities computed with open_clip itself: softmax over the class prompts
    of logit_scale * cosine(image, prompt)."""
    import open_clip

    from geosynth.data import load_dataset

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{clip}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{clip}")
    ds = load_dataset(synth)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(ds.image(i)) for i in range(len(ds))]))
        txt = model.encode_text(tokenizer([TEMPLATE.format(c) for c in ds.class_names]))
        img = torch.nn.functional.normalize(img.double(), dim=-1)
        txt = torch.nn.functional.normalize(txt.double(), dim=-1)
        probs = (model.logit_scale.exp().double() * img @ txt.T).softmax(dim=1)
    return probs, list(ds.labels)


def test_zero_shot_clip_confidence_decides_off_class_and_budget(cli, tmp_path, clip_dir):
    synth = make_toy_dataset(tmp_path / "synth", per_class=4, seed=3, classes=CLASSES)
    out = tmp_path / "kept"
    res = cli(
        "filter", synth, "--classifier", f"clip:{clip_dir}", "--prompt-template", TEMPLATE,
        "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    recs = [json.loads(x) for x in (out / "filter.jsonl").read_text().splitlines()]
    probs, labels = _reference(clip_dir, synth)
    assert len(recs) == len(labels)
    for r, p, lab in zip(recs, probs, labels, strict=True):
        assert r["confidence"] == pytest.approx(float(p[lab]), abs=1e-5)
        assert r["predicted"] == CLASSES[int(p.argmax())]
        assert r["kept"] is (r["predicted"] == r["class_name"])
        assert r["reason"] in (None, "off-class")
    # this random toy CLIP keeps some images and drops others: both sides are exercised
    assert 0 < sum(r["kept"] for r in recs) < len(recs)
    # a budget ranks by the same confidence: the 2 most confident per class stay
    out2 = tmp_path / "kept-budget"
    res = cli(
        "filter", synth, "--classifier", f"clip:{clip_dir}", "--prompt-template", TEMPLATE,
        "--min-confidence", "0", "--per-class", "2", "--out", out2,
    )  # fmt: skip
    assert res.code == 0, res.err
    recs = [json.loads(x) for x in (out2 / "filter.jsonl").read_text().splitlines()]
    for c in range(len(CLASSES)):
        mine = [i for i, lab in enumerate(labels) if lab == c]
        want = sorted(mine, key=lambda i: (-float(probs[i, c]), i))[:2]
        assert [i for i in mine if recs[i]["kept"]] == sorted(want)
        assert {recs[i]["reason"] for i in mine if not recs[i]["kept"]} == {"budget"}


def test_clip_classifier_errors_name_the_flag(cli, tmp_path, clip_dir):
    synth = make_toy_dataset(tmp_path / "synth", per_class=2, seed=3, classes=CLASSES)
    res = cli("filter", synth, "--classifier", "clip:", "--out", tmp_path / "a")
    assert res.code == 2 and "--classifier" in res.err and "open_clip model" in res.err
    res = cli("filter", synth, "--classifier", f"clip:{tmp_path}/nope", "--out", tmp_path / "b")
    assert res.code == 2 and "--classifier" in res.err
    res = cli(
        "filter", synth, "--classifier", f"clip:{clip_dir}", "--prompt-template", "a photo",
        "--out", tmp_path / "c",
    )  # fmt: skip
    assert res.code == 2 and "--prompt-template" in res.err and "{}" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not any((tmp_path / n).exists() for n in "abc")
