"""The output store of a generation job: the layout (class folders, ``.parts/`` while running,
``OUT.previews/``), the plan that shards share under a file lock, the repair of rows a killed
run left, and the idempotent finalize (metadata, card, contact sheets, provenance). See
:mod:`.generate` and docs/reliability.md."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from geosynth import faults
from geosynth.artifacts import (
    DIR_PROVENANCE_NAME,
    Provenance,
    atomic_path,
    check_replaceable,
    clean_temporaries,
    settings_diff,
    write_provenance,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.data.card import write_dataset_card
from geosynth.data.folder import METADATA_NAME
from geosynth.data.names import safe_dirname
from geosynth.diffusion.sampling.spec import (
    PARTS,
    RADIOMETRY_NAME,
    GenerationSpec,
    all_jobs,
    shard_jobs,
)
from geosynth.errors import GeosynthError
from geosynth.viz import image_grid

PREVIEWS_SUFFIX = ".previews"


class PlannedJob(Protocol):
    """A generation job whose settings ``plan()`` gives as JSON data (recorded and compared)."""

    def plan(self) -> dict[str, Any]: ...


#: Column types of the dataset card that one run's values cannot tell (null under Gaussian
#: noise); the nested ones (LoRA mixture, control source) stay in metadata.jsonl only.
CARD_TYPES = {
    "sqrt_alpha_bar": "float64",
    "leak_timestep": "int64",
    "loras": None,
    "control": None,
    "lon": "float64",
    "lat": "float64",
    "gsd": "float64",
    "cloud_cover": "float64",
    "date": "string",
    "metadata_from": "string",
}


def previews_dir(out: Path) -> Path:
    """``OUT.previews``, beside ``out``: contact sheets and 8-bit previews. They live outside the
    dataset because any extra folder in it is a class to torchvision's ImageFolder and timm,
    and a PNG beside each GeoTIFF would be counted as a second image."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        out = Path(os.path.abspath(out))
    return out.with_name(out.name + PREVIEWS_SUFFIX)


def image_rel(class_name: str, index: int) -> str:
    return f"{safe_dirname(class_name)}/{index:06d}.png"


def _sheet_source(out: Path, row: dict[str, Any]) -> Path:
    """The 8-bit picture of a row for its class's contact sheet: the image itself, or for
    native output (a GeoTIFF) its preview in ``OUT.previews``."""
    rel = str(row["file_name"])
    if rel.endswith(".png"):
        return out / rel
    return previews_dir(out) / (rel.rsplit(".", 1)[0] + ".png")


def class_job(row: dict[str, Any]) -> tuple[str, int]:
    """The job a class-generation row records: (class name, index)."""
    return row["class_name"], int(row["index"])


def read_done(
    out: Path,
    job: Callable[[dict[str, Any]], tuple[str, int]] = class_job,
    files: tuple[str, ...] = ("file_name",),
) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows of finished jobs (row written and its ``files`` present), keyed by ``job(row)``,
    from every shard's parts file."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for part in sorted((out / PARTS).glob("rows-*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if all((out / row[f]).is_file() for f in files):
                done[job(row)] = row
    return done


@contextlib.contextmanager
def output_lock(out: Path, create: bool = True) -> Iterator[None]:
    """An exclusive lock on ``OUT/.parts/lock`` (shards starting or finalizing at once). With
    ``create=False`` a missing ``.parts`` raises FileNotFoundError instead of being made."""
    if create:
        (out / PARTS).mkdir(parents=True, exist_ok=True)
    with open(out / PARTS / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: Plan keys added after plans were first written; an older plan lacks them and is compared
#: without them (the other settings still have to match).
LATER_KEYS = ("model_digest", "family")


def same_plan(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a recorded plan is this job's (see :data:`LATER_KEYS`)."""
    new = {k: v for k, v in new.items() if k in old or k not in LATER_KEYS}
    if "articles" not in old and new.get("articles") is False:  # filled literally, as then
        new = {k: v for k, v in new.items() if k != "articles"}
    return old == new


def _recorded_plan(out: Path) -> dict[str, Any] | None:
    try:
        prov = json.loads((out / DIR_PROVENANCE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return prov.get("extra", {}).get("spec")


def _is_finished(out: Path) -> bool:
    return (out / METADATA_NAME).is_file() and not (out / PARTS).exists()


def _repair_rows(part: Path) -> None:
    """Drop a row cut short by a kill (and anything unreadable) from a shard's rows file, so
    that appending continues on a clean line."""
    if not part.is_file():
        return
    text = part.read_text()
    lines = text.splitlines()
    good = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        good.append(line)
    if len(good) != len(lines) or (text and not text.endswith("\n")):
        with atomic_path(part) as tmp:
            tmp.write_text("".join(line + "\n" for line in good))


def check_output(out: Path, resume: bool) -> None:
    """What :func:`prepare_output` refuses whatever the job's settings: called before a model
    loads, so such a refusal comes at once. Reads only (no lock, nothing written)."""
    check_replaceable(out, "directory")
    plan_path = out / PARTS / "plan.json"
    if _is_finished(out):
        if not resume:
            raise GeosynthError(
                f"out={str(out)!r}: a finished generation output is there; choose a new path "
                "(or pass resume=True to check that it was made with these settings)"
            )
        if _recorded_plan(out) is None:
            raise GeosynthError(
                f"out={str(out)!r}: {DIR_PROVENANCE_NAME} records no settings, so `resume` cannot "
                "tell whether it was made with these; choose a new path"
            )
        return
    # Another shard may have made .parts and not yet written the plan: it holds the lock.
    if out.is_dir() and any(q.name != PARTS for q in out.iterdir()) and not plan_path.is_file():
        raise GeosynthError(
            f"out={str(out)!r}: exists and is not a generation output in progress; "
            "choose a new path"
        )
    previews = previews_dir(out)
    check_replaceable(previews, "directory")
    if not plan_path.is_file() and previews.is_dir() and any(previews.iterdir()):
        raise GeosynthError(
            f"out={str(out)!r}: its previews folder {previews} already holds files from "
            "another run; choose a new path or remove that folder"
        )


def prepare_output(
    out: Path,
    spec: GenerationSpec | PlannedJob,
    resume: bool,
    shard: tuple[int, int] = (0, 1),
    temporaries: Callable[[], Iterable[Path]] | None = None,
) -> bool:
    """Start a new output directory, join the same job's other shards, or check that ``resume``
    continues the same job; True when the output is already complete (nothing to fill).
    ``spec`` is any job with a ``plan()``; ``temporaries`` lists what a killed run of this
    shard may have left half-written (default: class generation's images and previews).

    Nothing is written before every check has passed, so a refused call leaves no trace.
    """
    check_output(out, resume)
    plan = spec.plan()
    parts = out / PARTS
    plan_path = parts / "plan.json"
    if _is_finished(out):
        recorded = _recorded_plan(out)
        assert recorded is not None  # check_output
        if not same_plan(recorded, plan):
            raise GeosynthError(
                f"out={str(out)!r}: finished with other settings "
                f"({settings_diff(recorded, plan)}); `resume` needs the same settings, or choose "
                "a new path"
            )
        clean_temporaries(out)  # a finalize killed while removing .parts
        return True
    with output_lock(out):
        if plan_path.is_file():
            old = json.loads(plan_path.read_text())
            if not same_plan(old, plan):
                raise GeosynthError(
                    f"out={str(out)!r}: was started with other settings "
                    f"({settings_diff(old, plan)}); `resume` and other shards need the same "
                    "settings"
                )
            mine = parts / f"rows-{shard[0]}-of-{shard[1]}.jsonl"
            if not resume and (shard[1] == 1 or mine.exists()):
                raise GeosynthError(
                    f"out={str(out)!r}: an interrupted run of this job is there; pass "
                    "resume=True to continue it or choose a new path"
                )
            if resume:
                _repair_rows(mine)
                for tmp in temporaries() if temporaries else _class_temporaries(out, spec, shard):
                    tmp.unlink(missing_ok=True)
        else:
            with atomic_path(plan_path) as tmp:
                tmp.write_text(json_text(plan, indent=2))
            faults.stage("generate:plan")
    return False


def _class_temporaries(out: Path, spec: Any, shard: tuple[int, int]) -> Iterator[Path]:
    """Half-written images and previews a killed class-generation shard may have left."""
    for c, i in shard_jobs(spec, shard):
        for where in (out, previews_dir(out)):
            yield from (where / safe_dirname(c)).glob(f".{i:06d}.png.tmp-*")


def finalize(out: Path, spec: GenerationSpec, provenance: Provenance) -> bool:
    """If every job is done, write metadata.jsonl, the dataset card, contact sheets (in
    ``OUT.previews``) and provenance, then remove ``.parts``. Idempotent and safe to repeat after a kill at any point: every file is written
    atomically with content that depends only on the jobs, and ``.parts`` (the proof that the
    output is unfinished) goes last, by one rename."""
    parts = out / PARTS
    if not parts.is_dir():
        return (out / METADATA_NAME).is_file()
    if len(read_done(out)) < len(all_jobs(spec)):
        return False
    try:
        lock = output_lock(out, create=False)
        lock.__enter__()
    except FileNotFoundError:  # another shard finalized meanwhile
        return (out / METADATA_NAME).is_file()
    with contextlib.ExitStack() as stack:
        stack.push(lock)
        if not (parts / "plan.json").is_file():  # another shard finalized while we waited
            return (out / METADATA_NAME).is_file()
        done = read_done(out)
        if len(done) < len(all_jobs(spec)):
            return False
        previews = previews_dir(out)
        for leftover in (*out.glob(".*.tmp-*"), *previews.glob(".*.tmp-*")):
            leftover.unlink(missing_ok=True)  # a finalize killed while writing
        rows = [done[job] for job in all_jobs(spec)]
        if spec.radiometry is not None:
            with atomic_path(out / RADIOMETRY_NAME) as tmp:
                tmp.write_text(json_text(spec.radiometry, indent=2) + "\n")
        with atomic_path(out / METADATA_NAME) as tmp:
            tmp.write_text("".join(json_text(r) + "\n" for r in rows))
        write_dataset_card(out, spec.classes, rows, "geosynth generated dataset", CARD_TYPES)
        faults.stage("generate:finalize:metadata")
        previews.mkdir(exist_ok=True)
        for c in spec.classes:
            imgs = [
                Image.open(_sheet_source(out, done[c, i])) for i in range(min(spec.count(c), 64))
            ]
            grid = image_grid([imgs[r : r + 8] for r in range(0, len(imgs), 8)], cell=96)
            with atomic_path(previews / f"{safe_dirname(c)}.png") as tmp:
                grid.save(tmp, format="PNG")
        faults.stage("generate:finalize:sheets")
        provenance.extra["spec"] = spec.plan()
        write_provenance(out, provenance)
        faults.stage("generate:finalize:provenance")
        gone = out / f"{PARTS}.old-{uuid.uuid4().hex[:8]}"
        os.replace(parts, gone)
        faults.stage("generate:finalize:parts")
    shutil.rmtree(gone, ignore_errors=True)
    return True
