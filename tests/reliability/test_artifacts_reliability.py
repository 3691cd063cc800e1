"""Artifacts: a directory at an output file path, NaN and malformed metadata on load,
byte-identical files from identical runs."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
import torch

from geosynth import artifacts
from geosynth.artifacts import (
    Provenance,
    atomic_path,
    load_channel_means,
    load_embeddings,
    load_tensors,
    save_tensors,
    write_json,
)
from geosynth.errors import GeosynthError
from tests.reliability.conftest import SRC


def _prov() -> Provenance:
    return Provenance(command="test", argv=["geosynth", "test"])


def test_a_directory_at_an_output_file_path_is_refused_and_kept(tmp_path) -> None:
    """Defect 2: the atomic writer deleted a directory sitting at the output path."""
    d = tmp_path / "out.safetensors"
    d.mkdir()
    (d / "precious.txt").write_text("mine")
    with pytest.raises(GeosynthError, match="is a directory"):
        save_tensors(d, {"x": torch.zeros(2)}, provenance=_prov())
    with pytest.raises(GeosynthError, match="is a directory"):
        write_json(d, {"a": 1})
    with pytest.raises(GeosynthError, match="is a directory"), atomic_path(d) as tmp:
        tmp.write_text("a file")
    assert (d / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]  # no temporaries


def test_cli_refuses_a_directory_at_out_with_one_line(cli, toy_data, toy_models, tmp_path) -> None:
    d = tmp_path / "feats.safetensors"
    d.mkdir()
    (d / "precious.txt").write_text("mine")
    res = cli("embed", toy_data, "--features", toy_models["dinov2"], "--out", d)
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    assert "is a directory" in res.err and (d / "precious.txt").read_text() == "mine"
    res = cli(
        "embed", toy_data, "--features", toy_models["dinov2"], "--out", tmp_path / "f.safetensors"
    )
    assert res.code == 0, res.err


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_are_refused_on_load(bad, tmp_path) -> None:
    """Defect 10: NaN channel means gave black images and exit 0."""
    means = torch.zeros(2, 4)
    means[1, 2] = bad
    path = tmp_path / "means.safetensors"
    save_tensors(path, {"means": means}, provenance=_prov(), class_names=["a", "b"])
    with pytest.raises(GeosynthError, match="'means' has 1 NaN or infinite"):
        load_channel_means(path)
    emb = tmp_path / "emb.safetensors"
    save_tensors(emb, {"embeddings": means}, provenance=_prov())
    with pytest.raises(GeosynthError, match="NaN or infinite"):
        load_embeddings(emb)


def test_generate_with_nan_channel_means_exits_2(cli, toy_models, tmp_path) -> None:
    means = torch.full((2, 4), float("nan"))
    path = tmp_path / "means.safetensors"
    save_tensors(path, {"means": means}, provenance=_prov(), class_names=["water", "desert"])
    out = tmp_path / "out"
    res = cli(
        "generate",
        *("--model", toy_models["sd"], "--per-class", "1", "--steps", "2", "--out", out),
        *("--noise", "leak-aligned", "--channel-means", path),
    )
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err
    assert "NaN" in res.err and not out.exists()


def test_malformed_class_names_metadata_is_a_one_line_error(tmp_path) -> None:
    path = tmp_path / "means.safetensors"
    save_tensors(
        path, {"means": torch.zeros(2, 4)}, provenance=_prov(), metadata={"class_names": "a,b"}
    )
    with pytest.raises(GeosynthError, match="not a JSON list of strings"):
        load_channel_means(path)


_WRITE = """
import sys, torch
from geosynth.artifacts import Provenance, save_tensors
meta = {f"key{i}": str(i) for i in range(30)}
prov = Provenance(command="test", argv=["geosynth", "test"])
save_tensors(sys.argv[1], {"b": torch.arange(6.0), "a": torch.ones(3, 2)}, provenance=prov,
             class_names=["x", "y"], metadata=meta)
"""


def test_identical_runs_write_identical_bytes(tmp_path) -> None:
    """Defect 11: safetensors wrote its metadata in hash-map order, different in every process."""
    env = {"PYTHONPATH": str(SRC)}
    files = []
    for i in range(3):  # each process gets another hash seed
        f = tmp_path / f"{i}.safetensors"
        subprocess.run([sys.executable, "-c", _WRITE, str(f)], env=env, check=True)
        files.append(f.read_bytes())
    assert files[0] == files[1] == files[2]
    (n,) = struct.unpack("<Q", files[0][:8])
    header = json.loads(files[0][8 : 8 + n])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    assert (8 + n) % 8 == 0
    back = load_tensors(tmp_path / "0.safetensors")  # the rewritten header reads back
    assert torch.equal(back.tensors["b"], torch.arange(6.0))
    assert back.metadata["key7"] == "7"


def test_stored_argv_leaves_out_what_does_not_change_the_content() -> None:
    content_argv = artifacts.content_argv
    a = content_argv(["/x/geosynth/__main__.py", "embed", "d", "--out", "a.st", "--json"])
    b = content_argv(["geosynth", "embed", "d", "--out=b.st", "--resume"])
    assert a == b == ["geosynth", "embed", "d"]


def test_temporaries_of_killed_writers_are_cleaned_by_the_next_write(tmp_path) -> None:
    target = tmp_path / "x.safetensors"
    dead = tmp_path / ".x.safetensors.tmp-999999999-deadbeef"  # no such process
    dead.write_bytes(b"half")
    alive = tmp_path / f".x.safetensors.tmp-{os.getpid()}-cafecafe"  # a live writer's
    alive.write_bytes(b"in flight")
    save_tensors(target, {"x": torch.zeros(1)}, provenance=_prov())
    assert not dead.exists() and alive.exists()
