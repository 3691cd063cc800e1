"""bench/validate.py's ``report`` stage: every number from the stages' own outputs into
``results.json``, ``report.md`` and image grids."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from validate_arms import filtered_name
from validate_data import EUROSAT, Size, Variant, _read, class_list, log, results, variants
from validate_models import model_flags


def _pm(stat: dict[str, Any] | None, scale: float = 100.0) -> str:
    if not stat:
        return "-"
    std = stat.get("std")
    mean = stat["mean"] * scale
    return (
        f"{mean:.2f} ± {std * scale:.2f}"
        if std is not None and stat.get("n", 1) > 1
        else f"{mean:.2f}"
    )


def collect(work: Path, size: Size) -> dict[str, Any]:
    """Every number the report shows, from the stages' own outputs."""
    res: dict[str, Any] = {"size": asdict(size), "variants": {}}
    vae = _read(work / "vae/geosynth-vae.json")
    res["vae"] = vae and {
        "reconstruction": vae["reconstruction"],
        "scaling_factor": vae["scaling_factor"],
    }
    for name in model_flags(size):
        card = _read(work / f"ft-{name}/geosynth.json")
        res.setdefault("training", {})[name] = card and {
            "final_loss": card["final_loss"],
            "steps": card["steps"],
        }
    for v in [*variants(size), Variant("real-val", "", label="real val images (floor)")]:
        ev = _read(results(work) / "eval" / f"{v.name}.json") or {}
        row: dict[str, Any] = {
            "label": v.label,
            "scheduler": v.scheduler,
            "noise": v.noise,
            "leak_timestep": v.leak_timestep,
        }
        if ev:
            metrics = ev.get("prdc", {}).get("metrics", {})
            row.update(
                fid=ev.get("fid", {}).get("value"),
                kid=ev.get("kid", {}).get("mean"),
                density=metrics.get("density"),
                coverage=metrics.get("coverage"),
                rarity=metrics.get("rarity_mean"),
                color_error=ev.get("color", {}).get("mean_abs_error"),
                latent_error=ev.get("latent_color", {}).get("mean_abs_error"),
                color_per_class={
                    c: d["abs_error"] for c, d in ev.get("color", {}).get("per_class", {}).items()
                },
                color_signed={
                    c: d["error"] for c, d in ev.get("color", {}).get("per_class", {}).items()
                },
                latent_per_class={
                    c: d["abs_error"]
                    for c, d in ev.get("latent_color", {}).get("per_class", {}).items()
                },
            )
        for key, clf in (("clf", v.name), ("clf_real", v.name + "+real")):
            rep = _read(results(work) / "clf" / clf / "report.json")
            if rep:
                row[key] = rep["test"]["top1"]
        res["variants"][v.name] = row
    rep = _read(results(work) / "clf/real-16shot/report.json")
    res["real_16shot"] = rep and rep["test"]["top1"]
    res["filtered"] = {}
    for name in size.mixed_downstream:
        fr = _read(results(work) / "filter" / f"{name}.json")
        if not fr:
            continue
        per = fr["per_class"]
        row = {
            "images": sum(r["images"] for r in per.values()),
            "kept": sum(r["kept"] for r in per.values()),
            "dropped": {why: sum(r[why] for r in per.values()) for why in ("copy", "budget")},
            "memorisation": fr["memorisation"],
        }
        for key, clf in (("clf", name), ("clf_real", name + "+real")):
            rep = _read(results(work) / "clf" / clf / "report.json")
            row[key] = rep and rep["test"]["top1"]
            rep = (
                _read(
                    results(work) / "clf" / filtered_name(clf.replace("+real", "")) / "report.json"
                )
                if key == "clf"
                else _read(results(work) / "clf" / (filtered_name(name) + "+real") / "report.json")
            )
            row[key + "_filtered"] = rep and rep["test"]["top1"]
        res["filtered"][name] = row
    return res


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def write_grids(work: Path, size: Size, dest: Path, per_row: int = 6) -> list[str]:
    """One grid per synthetic set (rows: classes) and one of real test images."""
    from PIL import Image

    from geosynth.viz import image_grid

    dest.mkdir(parents=True, exist_ok=True)
    classes = class_list(size)
    names = []
    sources = {"real-test": EUROSAT / "test"} | {
        v.name: results(work) / "synth" / v.name for v in variants(size)
    }
    for name, root in sources.items():
        if not root.is_dir():
            continue
        rows = []
        for c in classes:
            files = sorted((root / c).glob("*.*"))[:per_row]
            rows.append([Image.open(f).convert("RGB") for f in files])
        image_grid(rows, classes, cell=32, label_width=100).save(
            dest / f"{name}.png", optimize=True
        )
        names.append(name)
    return names


def stage_report(work: Path, size: Size, started: str) -> None:
    import torch

    res = collect(work, size)
    res["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    res["date"] = started
    (results(work) / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    grids = write_grids(work, size, results(work) / "grids")
    lines = [
        f"# Validation on real EuroSAT ({res['date']})",
        "",
        f"Machine: {res['machine']}. Size: `{json.dumps(res['size'])}`.",
        "",
    ]
    if res["vae"]:
        r = res["vae"]["reconstruction"]
        lines += [
            "## Autoencoder",
            "",
            "| images | MAE (grey levels) | RMSE | PSNR (dB) | channel-mean MAE |",
            "| --- | --- | --- | --- | --- |",
        ]
        for k, v in r.items():
            lines.append(
                f"| {k} ({v['images']}) | {v['mae']:.2f} | {v['rmse']:.2f} | {v['psnr_db']:.2f} | {v['channel_mean_mae']:.2f} |"
            )
        lines.append("")
    lines += [
        "## Table 3 shape: top-1 on test (%, mean ± std over seeds) and distribution metrics vs test",
        "",
        "| synthetic set | synthetic only | synthetic + 16-shot | FID | KID | density | coverage | rarity | colour err (pixels) | colour err (latent) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in res["variants"].items():
        lines.append(
            f"| {name} | {_pm(row.get('clf'))} | {_pm(row.get('clf_real'))} | {_f(row.get('fid'), '.2f')} | "
            f"{_f(row.get('kid'), '.4f')} | {_f(row.get('density'))} | {_f(row.get('coverage'))} | "
            f"{_f(row.get('rarity'), '.2f')} | {_f(row.get('color_error'), '.4f')} | {_f(row.get('latent_error'), '.4f')} |"
        )
    lines += ["", f"Real 16-shot only: {_pm(res['real_16shot'])}", ""]
    if res["filtered"]:
        lines += [
            "## Filtered arm: `geosynth filter --train 16 shots --classifier real-shot probe`",
            "",
            "| synthetic set | memorised (copies / images) | kept | synthetic only | filtered | synthetic + 16-shot | filtered + 16-shot |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in res["filtered"].items():
            m = row["memorisation"] or {}
            lines.append(
                f"| {name} | {m.get('copies', '-')} / {m.get('images', '-')} | {row['kept']} | "
                f"{_pm(row.get('clf'))} | {_pm(row.get('clf_filtered'))} | "
                f"{_pm(row.get('clf_real'))} | {_pm(row.get('clf_real_filtered'))} |"
            )
        lines.append("")
    classes = class_list(size)
    lines += [
        "## Fig. 3 quantity: per-class mean |channel-mean error| in pixels (0..1), vs test",
        "",
        "| synthetic set | " + " | ".join(classes) + " |",
        "| --- |" + " --- |" * len(classes),
    ]
    for name, row in res["variants"].items():
        pc = row.get("color_per_class", {})
        lines.append(f"| {name} | " + " | ".join(_f(pc.get(c)) for c in classes) + " |")
    lines += ["", "Grids: " + ", ".join(f"grids/{g}.png" for g in grids), ""]
    (results(work) / "report.md").write_text("\n".join(lines))
    log(f"report: {results(work) / 'report.md'}")
