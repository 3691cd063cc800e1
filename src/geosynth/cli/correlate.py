"""``geosynth rarity-correlate``: does rarity predict how much synthetic data helps?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geosynth import correlate_reports
from geosynth.cli.options import JsonOpt
from geosynth.cli.output import message, print_json, print_table

#: Library parameters that this command's options feed under other names (cli/errors.py).
LIBRARY_PARAMS = {"gaps_csv": "--gaps"}


def rarity_correlate(
    reports: Annotated[
        list[Path],
        typer.Argument(help="Rarity reports (JSON from rarity --out).", show_default=False),
    ],
    gaps: Annotated[
        Path,
        typer.Option(
            "--gaps",
            help="CSV with columns dataset,gap (e.g. real minus synthetic top-1).",
            show_default=False,
        ),
    ],
    metric: Annotated[
        str,
        typer.Option(
            "--metric", help="Report metric on the x axis: rarity_mean, density, coverage, ..."
        ),
    ] = "rarity_mean",
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Scatter plot PNG with labels.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pearson correlation between a rarity metric and accuracy gaps across datasets.

    A report's dataset name is its file name without .json; the CSV names the same datasets.

    \b
    Example:
      geosynth rarity-correlate reports/*.json --gaps gaps.csv --plot rarity-vs-gap.png
    """
    result = correlate_reports(reports, gaps, metric=metric, plot=plot)
    if as_json:
        print_json(result)
        return
    print_table(
        f"{metric} vs accuracy gap",
        ["dataset", metric, "gap"],
        [(p["dataset"], f"{p['x']:.4f}", f"{p['gap']:.4f}") for p in result["points"]],
    )
    message(
        f"Pearson R = {result['pearson_r']:.3f}, p-value = {result['p_value']:.3g} "
        f"(n = {result['n']})" + (f"; plot: {plot}" if plot else "")
    )
