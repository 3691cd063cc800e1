"""Files that geosynth steps hand to each other: safetensors tensors with JSON metadata.

Every output is written atomically (a temporary name in the same directory, then a rename) so a
killed run never leaves a half-written file that a later step would trust, and every output gets a
provenance sidecar (argv, version, input fingerprints, seeds, start and end time). The formats are
documented in ``docs/formats.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import safe_open as _safe_open
from safetensors.torch import save as _save_bytes

from geosynth import __version__
from geosynth.errors import GeosynthError
from geosynth.invocation import current_argv

PROVENANCE_SUFFIX = ".provenance.json"
DIR_PROVENANCE_NAME = "provenance.json"


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories. The temporary lives in the same directory so the final
    ``os.replace`` is a rename on one filesystem. An existing directory at ``path`` is replaced
    only by a directory (swapped out, removed after the new one is in place); something of the
    other kind at ``path`` (a directory where a file is written, or the reverse) is refused and
    left untouched, since it is not ours to remove.
    """
    final = output_path(path)
    check_replaceable(final, None)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        check_replaceable(final, "directory" if tmp.is_dir() else "file")
        if final.is_dir() and not final.is_symlink():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def output_path(path: str | os.PathLike[str]) -> Path:
    """The path the OS will write to, for every output check: ``nope/../first`` is ``first``
    even while ``nope`` is missing (creating ``nope`` on the way, as a writer would, then
    writing to ``first``). A path with ``..`` has its folder resolved as the OS does (through
    symlinks, missing folders cancelled); the last name is kept, so a symlink there stays a
    link. Paths without ``..`` are returned as given."""
    p = Path(path)
    if ".." not in p.parts:
        return p
    if p.name in ("", ".", ".."):
        return Path(os.path.realpath(p))
    return Path(os.path.realpath(p.parent)) / p.name


def check_replaceable(path: Path, kind: str | None = "file") -> None:
    """Refuse an output path that exists as something ``kind`` ("file" or "directory") cannot
    replace: a directory where a file goes or a file where a directory goes, or any parent that
    is a file. ``None`` checks only the parents. The path is taken as :func:`output_path` sees
    it; writers check and write ``output_path(out)`` so that their own checks see it too."""
    path = output_path(path)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise GeosynthError(f"{path}: {parent} is a file, expected a directory")
    if kind == "file" and path.is_dir() and not path.is_symlink():
        raise GeosynthError(
            f"{path}: is a directory, expected a file path; it is left as is (choose another path)"
        )
    if kind == "directory" and path.exists() and not path.is_dir():
        raise GeosynthError(f"{path}: is a file, expected a directory path; it is left as is")


def clean_temporaries(root: Path) -> int:
    """Remove the temporaries (``.NAME.tmp-*``, ``.NAME.old-*``) that a killed writer left under
    ``root``; returns how many. Only names :func:`atomic_path` makes are touched."""
    n = 0
    if not root.is_dir():
        return 0
    for p in sorted(root.rglob(".*"), reverse=True):
        if ".tmp-" in p.name or ".old-" in p.name:
            _remove(p)
            n += 1
    return n


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale_temporaries(final: Path) -> None:
    """Remove the temporaries of ``final`` left by writers that no longer run (killed): their
    names carry the writer's process id. Temporaries of a live process are left alone."""
    prefix = f".{final.name}.tmp-"
    if not final.parent.is_dir():
        return
    for p in final.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(p)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    clean_stale_temporaries(Path(path))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


# --------------------------------------------------------------------------- fingerprints


def file_digest(path: Path) -> str:
    """blake2b-128 of a file's bytes, streamed."""
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(source: str | os.PathLike[str]) -> str:
    """A content hash of a file or directory tree; hub ids and other non-paths hash their name.

    Directories hash every file's relative path and content (provenance sidecars excluded, so that
    re-running a step does not change the fingerprint of its output), which makes the fingerprint
    independent of file system order and modification times.
    """
    p = Path(source)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():
        h = hashlib.blake2b(digest_size=16)
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p).as_posix()
            if rel.endswith(PROVENANCE_SUFFIX) or rel == DIR_PROVENANCE_NAME:
                continue
            h.update(rel.encode())
            h.update(file_digest(f).encode())
        return h.hexdigest()
    return "name:" + hashlib.blake2b(str(source).encode(), digest_size=16).hexdigest()


def combine_fingerprints(fingerprints: Mapping[str, str]) -> str:
    """One hash over several named inputs (order-independent)."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(fingerprints):
        h.update(f"{key}={fingerprints[key]};".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- provenance


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Provenance:
    """Where an output came from: enough to re-run it and to tell whether its inputs changed."""

    command: str
    inputs: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    argv: list[str] = field(default_factory=current_argv)
    version: str = __version__
    started: str = field(default_factory=_now)
    finished: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        command: str,
        inputs: Mapping[str, str | os.PathLike[str]] | None = None,
        seeds: Mapping[str, int] | None = None,
        **extra: Any,
    ) -> Provenance:
        """Begin a record; ``inputs`` maps a role ("dataset", "model") to a path or id."""
        fps = {f"{k}:{v}": fingerprint(v) for k, v in (inputs or {}).items()}
        return cls(command=command, inputs=fps, seeds=dict(seeds or {}), extra=dict(extra))

    @property
    def input_fingerprint(self) -> str:
        return combine_fingerprints(self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "argv": self.argv,
            "version": self.version,
            "inputs": self.inputs,
            "input_fingerprint": self.input_fingerprint,
            "seeds": self.seeds,
            "started": self.started,
            "finished": self.finished or _now(),
            **({"extra": self.extra} if self.extra else {}),
        }


def provenance_path(output: str | os.PathLike[str]) -> Path:
    """The sidecar of an output: ``DIR/provenance.json`` for a directory, ``FILE.provenance.json``
    for a file."""
    out = Path(output)
    if out.is_dir():
        return out / DIR_PROVENANCE_NAME
    return out.with_name(out.name + PROVENANCE_SUFFIX)


def write_provenance(output: str | os.PathLike[str], provenance: Provenance) -> Path:
    """Close the record (end time now) and write the sidecar of ``output`` atomically."""
    provenance.finished = _now()
    target = provenance_path(output)
    write_json(target, provenance.to_dict())
    return target


# --------------------------------------------------------------------------- tensors


@dataclass
class TensorFile:
    """The tensors and string metadata of one safetensors file."""

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]

    @property
    def class_names(self) -> list[str] | None:
        raw = self.metadata.get("class_names")
        if raw is None:
            return None
        try:
            names = json.loads(raw)
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GeosynthError(
                f"{self.path}: metadata 'class_names' is not a JSON list of strings: {raw[:60]!r}"
            )
        return names

    def require(self, name: str, *, ndim: int | None = None, what: str = "") -> torch.Tensor:
        """Return tensor ``name`` or fail with a message naming the file and what was expected."""
        if name not in self.tensors:
            names = sorted(self.tensors)
            found = ", ".join(names[:8]) or "none"
            if len(names) > 8:
                found += f", ... ({len(names) - 8} more)"
            hint = f" ({what})" if what else ""
            raise GeosynthError(f"{self.path}: no tensor '{name}'{hint}; tensors found: {found}")
        t = self.tensors[name]
        if ndim is not None and t.ndim != ndim:
            raise GeosynthError(
                f"{self.path}: tensor '{name}' has shape {tuple(t.shape)}, expected {ndim} dimensions"
            )
        return t


#: Options that change where or how a run writes, never what it writes: left out of the ``argv``
#: stored in a file's metadata, so that a resumed run, a rerun into another folder and an
#: uninterrupted run give byte-identical files (the provenance sidecar keeps the full argv).
#: Worker counts, compilation and experiment logging change speed or side logs only; a
#: ``--config`` file's values are written into the argv as options (see geosynth.cli.config).
NEUTRAL_FLAGS = {"--resume", "--overwrite", "--json", "--debug", "--no-cache", "--compile"}
NEUTRAL_OPTIONS = {"--out", "--workers", "--report-to", "--config"}


def content_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without the options of :data:`NEUTRAL_FLAGS` / :data:`NEUTRAL_OPTIONS` and with
    the program reduced to ``geosynth`` (it is a script path under ``python -m``)."""
    args = list(argv[1:])
    kept: list[str] = ["geosynth"] if argv else []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if a in NEUTRAL_FLAGS:
            continue
        if name in NEUTRAL_OPTIONS:
            skip = "=" not in a
            continue
        kept.append(a)
    return kept


def save_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    *,
    provenance: Provenance,
    class_names: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``tensors`` with geosynth's metadata keys, atomically, plus the provenance sidecar.

    Metadata values that are not strings are stored as JSON (safetensors only holds strings).
    """
    meta: dict[str, str] = {
        "format": "geosynth",
        "geosynth_version": __version__,
        "command": provenance.command,
        "argv": json.dumps(content_argv(provenance.argv)),
        "input_fingerprint": provenance.input_fingerprint,
    }
    if class_names is not None:
        meta["class_names"] = json.dumps(list(class_names))
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    out = output_path(path)
    check_replaceable(out, "file")
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = safetensors_bytes(contiguous, meta)
    clean_stale_temporaries(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    write_provenance(out, provenance)
    return out


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file as bytes, with the metadata keys in sorted order.

    safetensors serialises its metadata from a hash map, so the key order (and with it the
    file's bytes and fingerprint) changes from one process to the next; we rewrite the header
    with sorted metadata so that identical inputs give identical files. The tensor entries and
    data offsets are kept exactly as safetensors wrote them.
    """
    raw = _save_bytes(dict(tensors), metadata=dict(metadata))
    (n,) = struct.unpack("<Q", raw[:8])
    text = _canonical_header(json.loads(raw[8 : 8 + n]))
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def _canonical_header(header: dict[str, Any]) -> bytes:
    """A safetensors header with sorted metadata and tensor keys, padded to 8 bytes."""
    meta = header.pop("__metadata__", None)
    ordered: dict[str, Any] = {}
    if meta is not None:
        ordered["__metadata__"] = {k: meta[k] for k in sorted(meta)}
    ordered.update((k, header[k]) for k in sorted(header))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    return text + b" " * (-len(text) % 8)  # the data section stays 8-byte aligned


def canonicalize_safetensors(path: Path) -> None:
    """Rewrite a safetensors file written by another library (diffusers, transformers) with a
    sorted header, in place (atomically): same tensors and metadata, stable bytes."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    text = _canonical_header(json.loads(raw[8 : 8 + n]))
    if text != raw[8 : 8 + n]:
        with atomic_path(path) as tmp:
            tmp.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def load_tensors(path: str | os.PathLike[str]) -> TensorFile:
    """Read every tensor and the metadata of a safetensors file, with one-line errors."""
    p = Path(path)
    if not p.exists():
        raise GeosynthError(f"{p}: no such file (expected a .safetensors file)")
    if p.is_dir():
        raise GeosynthError(f"{p}: is a directory (expected a .safetensors file)")
    try:
        with _safe_open(str(p), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GeosynthError(f"{p}: not a readable safetensors file ({exc})") from exc
    check_finite(tensors, str(p))
    return TensorFile(path=p, tensors=tensors, metadata=metadata)


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse NaN or infinite values in floating-point tensors: downstream they turn into black
    images or NaN metrics without any error."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise GeosynthError(
                f"{where}: tensor '{name}' has {bad} NaN or infinite value(s); expected finite "
                "numbers (the file is damaged or was written by a diverged run)"
            )


def load_torch_state(path: str | os.PathLike[str]) -> Any:
    """Read a ``torch.save`` file of plain tensors and containers (optimizer and LR-schedule
    state) with ``weights_only=True``: torch's restricted loader, which runs no code from the
    file. Anything else in it is refused with a one-line error."""
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GeosynthError(f"{p}: no such file (expected a training-state file)") from None
    except Exception as exc:  # the restricted loader's refusals come as several exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GeosynthError(
            f"{p}: not a plain tensor-state file; refused to load it ({first[:120]})"
        ) from None


# --------------------------------------------------------------------------- typed artifacts


@dataclass
class Embeddings:
    """N feature vectors (float32, N x D) with optional integer labels into ``class_names`` and
    optional per-row ``ids`` (the source file's key in its dataset, or the webdataset sample
    key), so that rows can be joined back to images."""

    embeddings: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    ids: list[str] | None = None

    def __post_init__(self) -> None:
        _check_embeddings(self, "embeddings")


def _check_embeddings(e: Embeddings, where: str) -> None:
    if e.embeddings.ndim != 2:
        raise GeosynthError(f"{where}: 'embeddings' must be N x D, got {tuple(e.embeddings.shape)}")
    if e.ids is not None and len(e.ids) != e.embeddings.shape[0]:
        raise GeosynthError(f"{where}: {len(e.ids)} row ids for {e.embeddings.shape[0]} embeddings")
    if e.labels is not None:
        if e.labels.ndim != 1 or e.labels.shape[0] != e.embeddings.shape[0]:
            raise GeosynthError(
                f"{where}: 'labels' must hold one label per embedding "
                f"({e.embeddings.shape[0]}), got shape {tuple(e.labels.shape)}"
            )
        if e.class_names is not None and e.labels.numel():
            lo, hi = int(e.labels.min()), int(e.labels.max())
            if lo < 0 or hi >= len(e.class_names):
                raise GeosynthError(
                    f"{where}: labels range over [{lo}, {hi}] but only "
                    f"{len(e.class_names)} class names are recorded"
                )


def encode_strings(strings: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """N strings as two tensors any safetensors reader can take: their UTF-8 bytes back to back
    (uint8) and N + 1 offsets (int64; string i is ``bytes[offsets[i]:offsets[i + 1]]``). Row ids
    of millions of LAION samples would not fit the 100 MB JSON header of a safetensors file."""
    data = [s.encode("utf-8") for s in strings]
    offsets = torch.zeros(len(data) + 1, dtype=torch.int64)
    if data:
        offsets[1:] = torch.tensor([len(b) for b in data], dtype=torch.int64).cumsum(0)
    blob = torch.frombuffer(bytearray(b"".join(data)), dtype=torch.uint8) if data else None
    return (
        blob if blob is not None and blob.numel() else torch.zeros(0, dtype=torch.uint8)
    ), offsets


def decode_strings(blob: torch.Tensor, offsets: torch.Tensor) -> list[str]:
    """The strings :func:`encode_strings` wrote."""
    raw = blob.numpy().tobytes()
    o = offsets.tolist()
    return [raw[o[i] : o[i + 1]].decode("utf-8") for i in range(len(o) - 1)]


def save_embeddings(
    path: str | os.PathLike[str],
    emb: Embeddings,
    *,
    provenance: Provenance,
) -> Path:
    """Write tensor ``embeddings`` (float32) and, if present, ``labels`` (int64) and the row ids
    (``ids_utf8`` / ``ids_offsets``, see :func:`encode_strings`)."""
    tensors = {"embeddings": emb.embeddings.float()}
    if emb.labels is not None:
        tensors["labels"] = emb.labels.long()
    if emb.ids is not None:
        tensors["ids_utf8"], tensors["ids_offsets"] = encode_strings(emb.ids)
    return save_tensors(
        path, tensors, provenance=provenance, class_names=emb.class_names, metadata=emb.metadata
    )


def load_embeddings(path: str | os.PathLike[str]) -> Embeddings:
    """Read an embeddings file written by ``geosynth embed`` (or any file with the same keys)."""
    tf = load_tensors(path)
    emb = tf.require("embeddings", ndim=2, what="an N x D feature matrix").float()
    labels = tf.tensors.get("labels")
    ids = None
    if "ids_utf8" in tf.tensors and "ids_offsets" in tf.tensors:
        ids = decode_strings(tf.tensors["ids_utf8"], tf.tensors["ids_offsets"])
    try:
        return Embeddings(
            embeddings=emb,
            labels=None if labels is None else labels.long(),
            class_names=tf.class_names,
            metadata=tf.metadata,
            ids=ids,
        )
    except GeosynthError as exc:
        raise GeosynthError(f"{tf.path}: {exc}") from None


@dataclass
class ChannelMeans:
    """Per-class means (K x C, float32) of latent channels; ``std`` is for diagnostics."""

    means: torch.Tensor
    class_names: list[str]
    std: torch.Tensor | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.means.ndim != 2 or self.means.shape[0] != len(self.class_names):
            raise GeosynthError(
                f"channel means: 'means' must be K x C with K = {len(self.class_names)} classes, "
                f"got shape {tuple(self.means.shape)}"
            )
        if not self.means.is_floating_point():
            raise GeosynthError(
                f"channel means: 'means' must be floating point, got {self.means.dtype}"
            )
        check_finite({"means": self.means}, "channel means")

    def for_class(self, name: str) -> torch.Tensor:
        """The C-vector of one class, or an error listing the classes that exist."""
        if name not in self.class_names:
            raise GeosynthError(
                f"channel means have no class '{name}' (classes: {', '.join(self.class_names)})"
            )
        return self.means[self.class_names.index(name)]


def save_channel_means(
    path: str | os.PathLike[str], cm: ChannelMeans, *, provenance: Provenance
) -> Path:
    """Write tensor ``means`` (K x C float32), and ``std`` when known."""
    tensors = {"means": cm.means.float()}
    if cm.std is not None:
        tensors["std"] = cm.std.float()
    return save_tensors(
        path, tensors, provenance=provenance, class_names=cm.class_names, metadata=cm.metadata
    )


def load_channel_means(path: str | os.PathLike[str]) -> ChannelMeans:
    """Read a channel-means file; the class names are required to map rows to classes."""
    tf = load_tensors(path)
    means = tf.require("means", ndim=2, what="K x C per-class latent channel means").float()
    names = tf.class_names
    if names is None:
        raise GeosynthError(f"{tf.path}: metadata has no 'class_names' (needed to map rows)")
    try:
        return ChannelMeans(
            means=means, class_names=names, std=tf.tensors.get("std"), metadata=tf.metadata
        )
    except GeosynthError as exc:
        raise GeosynthError(f"{tf.path}: {exc}") from None
