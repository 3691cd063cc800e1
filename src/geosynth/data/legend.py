"""The legend: the classes of semantic maps and segmentation masks, and how mask pixels encode
them. One concept for both (a segmentation dataset is also a map set for seed 004).

``legend.json`` lists the classes in index order; everything but the names is optional::

    {"classes": [{"name": "Building", "color": "#3C1098"},
                 {"name": "Land", "color": [132, 41, 246], "aliases": ["#8429F5"]},
                 {"name": "Water", "color": "#E2A929", "value": 4}],
     "ignore": ["#000000", 255],
     "encoding": "auto", "tolerance": 0}

* ``color``: the class's colour in colour-rendered masks (``[r, g, b]`` or ``"#RRGGBB"``); a class
  without one gets a distinct colour for renderings. ``aliases``: more colours meaning the class.
* ``value``: the pixel value of the class in class-index masks (default: its position).
* ``ignore``: values and colours of unlabelled pixels (read as :data:`IGNORE`, -1).
* ``encoding``: how masks encode classes: ``auto`` (by file: RGB colours, greyscale indices,
  palette PNGs by their colours unless their palette agrees with the legend), ``color`` or
  ``index``.
* ``tolerance``: an RGB colour within this Euclidean distance (0..255 scale) of exactly one
  legend colour counts as that colour (default 0: exact, as lossless masks are).

A dataset's own palette file in the same spirit is read too: ``title`` for ``name`` (the
``classes.json`` of Humans in the Loop datasets, whose other keys are ignored). A colour or value
given twice (two classes, an alias, an ignore entry) is an error naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from geosynth.artifacts.jsontext import json_text
from geosynth.errors import GeosynthError

LEGEND_NAME = "legend.json"
#: Other palette files read from a dataset's folder when it has no legend.json.
PALETTE_NAMES = ("classes.json",)
IGNORE = -1
ENCODINGS = ("auto", "color", "index")

Color = tuple[int, int, int]
_HEX = re.compile(r"^#?([0-9A-Fa-f]{6})$")
#: Colours given to classes that name none (distinct, and not black or white).
_DEFAULT_COLORS = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def hex_color(c: Color) -> str:
    """``(60, 16, 152)`` -> ``"#3C1098"``."""
    return "#{:02X}{:02X}{:02X}".format(*c)


def parse_color(value: Any, where: str) -> Color:
    """``[r, g, b]`` or ``"#RRGGBB"`` as a colour; anything else is an error naming ``where``."""
    if isinstance(value, str):
        m = _HEX.match(value.strip())
        if m:
            v = int(m.group(1), 16)
            return (v >> 16, (v >> 8) & 255, v & 255)
    elif isinstance(value, list | tuple) and len(value) == 3:
        try:
            rgb = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            rgb = ()
        if (
            len(rgb) == 3
            and all(0 <= v <= 255 for v in rgb)
            and all(float(v) == int(v) for v in value)
        ):
            return (rgb[0], rgb[1], rgb[2])
    raise GeosynthError(f"{where}: colour {value!r}: expected [r, g, b] (0..255) or '#RRGGBB'")


def parse_ignore(value: Any, where: str) -> int | Color:
    """An ignore entry: an integer pixel value, or a colour."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return parse_color(value, where)


@dataclass(frozen=True)
class Legend:
    """Classes in index order, their colours, and how mask pixels encode them."""

    names: list[str]
    colors: list[Color]
    values: list[int] | None = None  # pixel value of each class in index masks (None: position)
    aliases: dict[Color, int] = field(default_factory=dict)  # more colours -> class
    ignore_values: tuple[int, ...] = ()
    ignore_colors: tuple[Color, ...] = ()
    encoding: str = "auto"
    tolerance: float = 0.0
    where: str = field(default="legend", compare=False)

    def __post_init__(self) -> None:
        self.check()

    def __len__(self) -> int:
        return len(self.names)

    @property
    def class_values(self) -> list[int]:
        return list(range(len(self.names))) if self.values is None else list(self.values)

    @property
    def has_ignore(self) -> bool:
        return bool(self.ignore_values or self.ignore_colors)

    def color_table(self) -> dict[Color, int]:
        """Every colour that means something: class colours and aliases -> class, ignore -> -1."""
        table = {c: k for k, c in enumerate(self.colors)}
        table.update(self.aliases)
        table.update({c: IGNORE for c in self.ignore_colors})
        return table

    def value_table(self) -> dict[int, int]:
        """Every pixel value of index masks that means something: value -> class or -1."""
        table = {v: k for k, v in enumerate(self.class_values)}
        table.update({v: IGNORE for v in self.ignore_values})
        return table

    def check(self) -> None:
        """Refuse repeated names, colours or values (the palette would be ambiguous)."""
        w = self.where
        if not self.names:
            raise GeosynthError(f"{w}: needs at least one class")
        if len(set(self.names)) != len(self.names):
            dup = next(n for n in self.names if self.names.count(n) > 1)
            raise GeosynthError(f"{w}: class name '{dup}' repeats")
        if len(self.colors) != len(self.names):
            raise GeosynthError(f"{w}: {len(self.names)} classes but {len(self.colors)} colours")
        if self.encoding not in ENCODINGS:
            raise GeosynthError(f"{w}: encoding {self.encoding!r}: expected one of {ENCODINGS}")
        if self.tolerance < 0:
            raise GeosynthError(f"{w}: tolerance {self.tolerance}: must be at least 0")
        owners: dict[Color, str] = {}
        entries = [(c, f"class '{n}'") for n, c in zip(self.names, self.colors, strict=True)]
        entries += [(c, f"an alias of '{self.names[k]}'") for c, k in self.aliases.items()]
        entries += [(c, "ignore") for c in self.ignore_colors]
        for color, owner in entries:
            if color in owners:
                raise GeosynthError(
                    f"{w}: colour {hex_color(color)} is given to {owners[color]} and to {owner}; "
                    "a palette must give each colour one meaning"
                )
            owners[color] = owner
        seen: dict[int, str] = {}
        values = [(v, f"class '{n}'") for n, v in zip(self.names, self.class_values, strict=True)]
        for v, owner in values + [(v, "ignore") for v in self.ignore_values]:
            if v in seen:
                raise GeosynthError(f"{w}: value {v} is given to {seen[v]} and to {owner}")
            seen[v] = owner

    def to_dict(self) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        for k, (n, c) in enumerate(zip(self.names, self.colors, strict=True)):
            row: dict[str, Any] = {"name": n, "color": list(c)}
            if self.values is not None and self.values[k] != k:
                row["value"] = self.values[k]
            aliases = [hex_color(a) for a, owner in self.aliases.items() if owner == k]
            if aliases:
                row["aliases"] = aliases
            rows.append(row)
        out: dict[str, Any] = {"classes": rows}
        if self.has_ignore:
            out["ignore"] = [*self.ignore_values, *(hex_color(c) for c in self.ignore_colors)]
        if self.encoding != "auto":
            out["encoding"] = self.encoding
        if self.tolerance:
            out["tolerance"] = self.tolerance
        return out

    @staticmethod
    def from_dict(data: Any, where: str) -> Legend:
        rows = data.get("classes") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise GeosynthError(
                f'{where}: expected {{"classes": [{{"name": ..., "color": [r, g, b]}}, ...]}}'
            )
        names: list[str] = []
        given: list[Color | None] = []
        values: list[int] = []
        aliases: dict[Color, int] = {}
        for k, r in enumerate(rows):
            name = r.get("name", r.get("title"))
            if name is None:
                raise GeosynthError(f"{where}: class {k} has no 'name'")
            names.append(str(name))
            at = f"{where}: class '{name}'"
            given.append(None if r.get("color") is None else parse_color(r["color"], at))
            value = r.get("value", k)
            if not isinstance(value, int) or isinstance(value, bool):
                raise GeosynthError(f"{at}: value {value!r}: expected an integer")
            values.append(value)
            for a in r.get("aliases", []) or []:
                color = parse_color(a, at)
                if color in aliases:
                    raise GeosynthError(f"{where}: colour {hex_color(color)} is aliased twice")
                aliases[color] = k
        ignore = data.get("ignore", []) or []
        if not isinstance(ignore, list):
            ignore = [ignore]
        parsed = [parse_ignore(v, f"{where}: ignore") for v in ignore]
        taken = {c for c in given if c is not None} | set(aliases)
        taken |= {c for c in parsed if isinstance(c, tuple)}
        spare = iter(c for c in _DEFAULT_COLORS + _spare_colors() if c not in taken)
        colors = [c if c is not None else next(spare) for c in given]
        try:
            tolerance = float(data.get("tolerance", 0) or 0)
        except (TypeError, ValueError):
            raise GeosynthError(f"{where}: tolerance: expected a number") from None
        return Legend(
            names,
            colors,
            values=None if values == list(range(len(values))) else values,
            aliases=aliases,
            ignore_values=tuple(v for v in parsed if isinstance(v, int)),
            ignore_colors=tuple(v for v in parsed if isinstance(v, tuple)),
            encoding=str(data.get("encoding", "auto")),
            tolerance=tolerance,
            where=where,
        )

    @staticmethod
    def read(path: Path) -> Legend:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise GeosynthError(f"{path}: no such legend file") from None
        except (OSError, ValueError) as exc:
            raise GeosynthError(f"{path}: not a JSON legend ({exc})") from None
        return Legend.from_dict(data, str(path))

    def write(self, path: Path) -> None:
        path.write_text(json_text(self.to_dict(), indent=2) + "\n")

    def with_ignore(self, entries: Sequence[str | int]) -> Legend:
        """This legend with more ignore entries: pixel values, ``#RRGGBB`` colours, or class
        names (that class leaves the legend: its colour, aliases and value become ignore; the
        other classes keep their values)."""
        legend = self
        for entry in entries:
            text = str(entry).strip()
            if text in legend.names:
                legend = legend._drop(legend.names.index(text))
                continue
            value = parse_ignore(text, "ignore")
            if isinstance(value, int):
                legend = replace(legend, ignore_values=(*legend.ignore_values, value))
            else:
                legend = replace(legend, ignore_colors=(*legend.ignore_colors, value))
        return legend

    def _drop(self, k: int) -> Legend:
        if len(self.names) == 1:
            raise GeosynthError(f"ignore: '{self.names[k]}' is the legend's only class")
        keep = [i for i in range(len(self.names)) if i != k]
        renumber = {old: new for new, old in enumerate(keep)}
        values = self.class_values
        ignored = [self.colors[k], *(c for c, o in self.aliases.items() if o == k)]
        return replace(
            self,
            names=[self.names[i] for i in keep],
            colors=[self.colors[i] for i in keep],
            values=[values[i] for i in keep],
            aliases={c: renumber[o] for c, o in self.aliases.items() if o != k},
            ignore_values=(*self.ignore_values, values[k]),
            ignore_colors=(*self.ignore_colors, *ignored),
        )

    def render(self, classes: Any) -> Any:
        """An RGB picture of a class-index map (ignored pixels black, or the first ignore
        colour), for contact sheets and inspection."""
        import numpy as np
        from PIL import Image

        ignore = self.ignore_colors[0] if self.ignore_colors else (0, 0, 0)
        palette = np.array([*self.colors, ignore], np.uint8)
        idx = np.asarray(classes)
        idx = np.where((idx >= 0) & (idx < len(self.names)), idx, len(self.names))
        return Image.fromarray(palette[idx], "RGB")

    def describe(self) -> str:
        """``Building #3C1098, Land #8429F6, ...`` (for messages)."""
        return ", ".join(
            f"{n} {hex_color(c)}" for n, c in zip(self.names, self.colors, strict=True)
        )


def _spare_colors() -> list[Color]:
    """More distinct colours for legends with many classes that name none."""
    return [((37 * i) % 256, (97 * i) % 256, (173 * i) % 256) for i in range(1, 4096)]


def find_legend(*candidates: Path | None, arg: str = "map_legend") -> Legend:
    """The first candidate that is a legend file, or a ``legend.json`` (else a dataset palette
    such as ``classes.json``) inside a candidate folder."""
    found = find_legend_or_none(*candidates)
    if found is not None:
        return found
    where = ", ".join(str(c) for c in candidates if c is not None)
    raise GeosynthError(f"no {LEGEND_NAME} found (looked in {where}); give `{arg}`")


def find_legend_or_none(*candidates: Path | None) -> Legend | None:
    for c in candidates:
        if c is None:
            continue
        if c.is_file():
            return Legend.read(c)
        for name in (LEGEND_NAME, *PALETTE_NAMES):
            if (c / name).is_file():
                return Legend.read(c / name)
    return None


def resolve_legend(
    legend: Legend | str | Path | None,
    ignore: Sequence[str | int] | None,
    *folders: Path | None,
) -> Legend | None:
    """``legend`` (a Legend, or a legend file), else the one found in ``folders``, with the
    ``ignore`` entries added; None when there is none (and no ``ignore`` to add)."""
    if isinstance(legend, Legend):
        found: Legend | None = legend
    elif legend is not None:
        path = Path(legend)
        if not path.is_file():
            raise GeosynthError(f"map_legend={str(legend)!r}: no such legend file")
        found = Legend.read(path)
    else:
        found = find_legend_or_none(*folders)
    if ignore:
        if found is None:
            where = ", ".join(str(f) for f in folders if f is not None)
            raise GeosynthError(
                f"ignore: there is no legend to add it to (no {LEGEND_NAME} in {where}); "
                "give `map_legend`"
            )
        found = found.with_ignore(list(ignore))
    return found
