"""``ImageDataset``: labelled images from any source, with the operations every step shares.

Sources (image folders, saved or hub Hugging Face datasets, geosynth imagefolders) only differ in
how they list samples and decode one image; they hand an :class:`ImageDataset` a list of
:class:`Sample` and a decoder. Class selection and K-shot sampling then work the same everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from geosynth.artifacts.jsontext import json_text
from geosynth.data.fewshot import few_shot_indices
from geosynth.data.metadata import OwnFields, SampleMetadata, read_sample_metadata
from geosynth.data.names import prompt_name
from geosynth.data.raster import EIGHT_BIT_MODES, Raster, raster_from_pil
from geosynth.errors import GeosynthError

if TYPE_CHECKING:
    from geosynth.data.radiometry import Radiometry


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: a stable key (relative path or row id), its label and a handle the
    source's decoder understands (a path, a row index)."""

    key: str
    label: int
    ref: Any


Decoder = Callable[[Sample], Image.Image]
RasterDecoder = Callable[[Sample], Raster]
Digest = Callable[[Sample], str]
MetadataReader = Callable[[Sample], OwnFields]


def preview_image(y: np.ndarray) -> Image.Image:
    """An 8-bit RGB preview of a 3 x H x W [-1, 1] array (the quantisation diffusers uses)."""
    arr = np.clip((np.asarray(y, dtype=np.float32) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    return Image.fromarray(arr.transpose(1, 2, 0), "RGB")


@contextlib.contextmanager
def _quiet_pil() -> Iterator[None]:
    """PIL logs an error (on stderr) before refusing a TIFF with many bands; we report it."""
    logger = logging.getLogger("PIL.TiffImagePlugin")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _not_8bit(img: Image.Image) -> bool:
    """True, before decoding, for files PIL would squash to (or cannot give as) 8-bit: 16-bit PNGs
    it hands over as 8-bit RGB(A), and TIFFs with other than 1- or 8-bit unsigned samples or more
    than 4 bands."""
    fmt = getattr(img, "format", None)
    tile: Any = getattr(img, "tile", None)  # ImageFile attributes, before decoding
    if fmt == "PNG" and tile:
        return ";16" in str(tile[0][3])
    if fmt == "TIFF":
        tags: Any = getattr(img, "tag_v2", {})  # TiffImageFile only
        bits = tags.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        fmt_codes = tags.get(339, (1,))
        fmt_codes = fmt_codes if isinstance(fmt_codes, tuple) else (fmt_codes,)
        return (
            any(b not in (1, 8) for b in bits)
            or any(f != 1 for f in fmt_codes)
            or tags.get(277, 1) > 4
        )
    return False


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """Labelled images; ``ds[i]`` is ``(PIL RGB image, label)``.

    ``class_names`` holds every class in label order; ``source`` and ``kind`` say where the data
    came from (for provenance and messages); ``digest`` gives a content id per sample, from which
    :meth:`fingerprint` identifies exactly the images selected.
    """

    source: str
    kind: str
    class_names: list[str]
    samples: list[Sample]
    decoder: Decoder
    digest: Digest
    selection: dict[str, Any] = field(default_factory=dict)
    # Native-unit reader (all bands, file dtype, georeference); None: derived from ``decoder``.
    raster_decoder: RasterDecoder | None = None
    # How native values become the model's 3-channel input (None: 8-bit RGB as decoded).
    radiometry: Radiometry | None = None
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)
    # The source's own metadata of a sample (JSON beside its files, metadata.jsonl columns);
    # georeference and date tags are read by ``metadata`` itself.
    metadata_reader: MetadataReader | None = None
    # A sidecar table's checked rows by sample key (geosynth.data.dataset_metadata).
    metadata_table: Mapping[str, Mapping[str, Any]] | None = None
    # Read once per sample, shared by the views (subsets) of one dataset.
    metadata_cache: dict[str, SampleMetadata] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.image(index), self.samples[index].label

    def image(self, index: int) -> Image.Image:
        """Sample ``index`` as an 8-bit RGB image.

        8-bit images decode as they always have. With a radiometry spec, the image is the spec's
        3-channel model input quantised for display (a preview). Other data (16-bit, float,
        multispectral) without a spec is an error: it is never squashed to 8-bit silently.
        """
        sample = self.samples[index]
        if self.radiometry is not None:
            return preview_image(self.model_array(index))
        try:
            with _quiet_pil():
                img = self.decoder(sample)
                sixteen = _not_8bit(img)
                img.load()
        except GeosynthError:
            raise
        except Exception as exc:  # PIL raises many types for broken files
            # PIL cannot decode many rasters (13 bands, some float layouts); if rasterio can, the
            # data is fine but needs a radiometry spec.
            try:
                raster = self.raster(index)
            except GeosynthError:
                raise GeosynthError(f"{self.describe(sample)}: cannot read image ({exc})") from None
            raise self._needs_radiometry(sample, raster) from None
        if sixteen or img.mode not in EIGHT_BIT_MODES:
            raise self._needs_radiometry(sample, self.raster(index))
        return img.convert("RGB")

    def model_array(self, index: int) -> np.ndarray:
        """Sample ``index`` through the radiometry spec: 3 x H x W float32 in [-1, 1]."""
        if self.radiometry is None:
            raise GeosynthError(f"{self.source}: no radiometry spec set (radiometry parameter)")
        return self.radiometry.forward(self.raster(index), self.describe(self.samples[index]))

    def model_input(self, index: int) -> Image.Image | np.ndarray:
        """What the diffusion model is fed: the 8-bit RGB image, or with a radiometry spec the
        float [-1, 1] array (no 8-bit rounding on the way)."""
        return self.image(index) if self.radiometry is None else self.model_array(index)

    def with_radiometry(self, spec: Radiometry | None) -> ImageDataset:
        """The same samples read through ``spec`` (resolve/fit it first: ``spec.resolve(ds)``)."""
        return replace(self, radiometry=spec)

    def _needs_radiometry(self, sample: Sample, raster: Raster) -> GeosynthError:
        return GeosynthError(
            f"{self.describe(sample)}: {raster.dtype} image with {raster.count} band(s) is not "
            "8-bit RGB; give a `radiometry` spec saying "
            "how its values map to the model's 3 channels"
        )

    def raster(self, index: int) -> Raster:
        """Sample ``index`` in native units: bands x H x W in the file's dtype, with CRS, transform,
        nodata and band names when the source has them. Never converted to 8-bit."""
        sample = self.samples[index]
        try:
            if self.raster_decoder is not None:
                return self.raster_decoder(sample)
            img = self.decoder(sample)
            img.load()
            return raster_from_pil(img)
        except GeosynthError as exc:
            where = self.describe(sample)
            raise GeosynthError(str(exc) if where in str(exc) else f"{where}: {exc}") from None
        except Exception as exc:
            raise GeosynthError(f"{self.describe(sample)}: cannot read image ({exc})") from None

    def metadata(self, index: int) -> SampleMetadata:
        """Where, when and at what resolution sample ``index`` was taken (centre lon/lat, GSD,
        cloud cover, date; :mod:`geosynth.data.metadata`), each None where the data cannot tell.
        Read on first use (the file header only, not its pixels) and kept."""
        sample = self.samples[index]
        found = self.metadata_cache.get(sample.key)
        if found is None:
            found = read_sample_metadata(
                sample.ref,
                raster=lambda: self.raster(index),
                own=None if self.metadata_reader is None else self.metadata_reader(sample),
                row=None if self.metadata_table is None else self.metadata_table.get(sample.key),
                where=self.describe(sample),
            )
            self.metadata_cache[sample.key] = found
        return found

    def describe(self, sample: Sample) -> str:
        """A human-readable location of a sample: its file path, or ``source[key]``."""
        return str(sample.ref) if self.kind == "imagefolder" else f"{self.source}[{sample.key}]"

    def fingerprint(self) -> str:
        """Content hash of the selected samples, their labels and the class names (computed once
        per view: it reads every file)."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(json_text(self.class_names).encode())
            for s in self.samples:
                h.update(f"{s.key}|{s.label}|{self.digest(s)};".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.samples]

    @property
    def prompt_names(self) -> list[str]:
        """Class names as they read in a prompt ("AnnualCrop" -> "annual crop")."""
        return [prompt_name(c) for c in self.class_names]

    def counts(self) -> dict[str, int]:
        """Number of images per class, in class order (zero for empty classes)."""
        c = Counter(self.labels)
        return {name: c.get(i, 0) for i, name in enumerate(self.class_names)}

    def subset(self, indices: Sequence[int], **selection: Any) -> ImageDataset:
        """A view on some samples; ``selection`` is recorded for provenance."""
        return replace(
            self,
            samples=[self.samples[i] for i in indices],
            selection={**self.selection, **selection},
        )

    def select_classes(self, names: Sequence[str]) -> ImageDataset:
        """Keep the named classes (in the dataset's own order) and relabel them 0..K-1."""
        unknown = [n for n in names if n not in self.class_names]
        if unknown:
            raise GeosynthError(
                f"`classes`: unknown class '{unknown[0]}' in {self.source} "
                f"(available: {', '.join(self.class_names)})"
            )
        keep = [c for c in self.class_names if c in set(names)]
        remap = {self.class_names.index(c): i for i, c in enumerate(keep)}
        samples = [replace(s, label=remap[s.label]) for s in self.samples if s.label in remap]
        return replace(
            self,
            class_names=keep,
            samples=samples,
            selection={**self.selection, "classes": keep},
        )

    def few_shot(self, shots: int, seed: int) -> ImageDataset:
        """``shots`` images per class, stratified and deterministic (see :mod:`.fewshot`)."""
        idx = few_shot_indices(self.labels, self.keys, self.class_names, shots, seed)
        return self.subset(idx, shots=shots, seed=seed)

    def check_nonempty(self) -> None:
        """Fail if the dataset, or any of its classes, holds no image."""
        if not self.samples:
            raise GeosynthError(f"{self.source}: no images found")
        empty = [name for name, n in self.counts().items() if n == 0]
        if empty:
            raise GeosynthError(f"{self.source}: class '{empty[0]}' has no images")
