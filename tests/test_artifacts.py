import json
from pathlib import Path

import pytest
import torch

from geosynth import __version__
from geosynth.artifacts import (
    ChannelMeans,
    Embeddings,
    Provenance,
    atomic_path,
    fingerprint,
    load_channel_means,
    load_embeddings,
    load_tensors,
    provenance_path,
    save_channel_means,
    save_embeddings,
    save_tensors,
)
from geosynth.errors import GeosynthError


def test_embeddings_round_trip_with_metadata_and_provenance(tmp_path: Path) -> None:
    src = tmp_path / "input.txt"
    src.write_text("some input")
    prov = Provenance.start("embed", inputs={"dataset": src}, seeds={"seed": 3})
    emb = Embeddings(torch.randn(7, 5), torch.tensor([0, 1, 1, 0, 2, 2, 1]), ["a", "b", "c"])
    path = save_embeddings(tmp_path / "feats.safetensors", emb, provenance=prov)

    back = load_embeddings(path)
    assert torch.equal(back.embeddings, emb.embeddings)
    assert torch.equal(back.labels, emb.labels) and back.labels.dtype == torch.int64
    assert back.class_names == ["a", "b", "c"]
    assert back.metadata["geosynth_version"] == __version__
    assert back.metadata["command"] == "embed"
    assert back.metadata["input_fingerprint"] == prov.input_fingerprint

    sidecar = json.loads(provenance_path(path).read_text())
    assert sidecar["inputs"] == {f"dataset:{src}": fingerprint(src)}
    assert sidecar["seeds"] == {"seed": 3}
    assert sidecar["version"] == __version__
    assert sidecar["started"] <= sidecar["finished"]
    assert isinstance(sidecar["argv"], list)


def test_channel_means_round_trip(tmp_path: Path) -> None:
    cm = ChannelMeans(torch.randn(3, 4), ["water", "forest", "urban"], std=torch.rand(3, 4))
    path = save_channel_means(tmp_path / "m.safetensors", cm, provenance=Provenance.start("cm"))
    back = load_channel_means(path)
    assert torch.equal(back.means, cm.means) and torch.equal(back.std, cm.std)
    assert torch.equal(back.for_class("forest"), cm.means[1])
    with pytest.raises(GeosynthError, match="no class 'desert'"):
        back.for_class("desert")


def test_missing_tensor_error_names_file_and_tensor(tmp_path: Path) -> None:
    path = save_tensors(
        tmp_path / "x.safetensors", {"other": torch.zeros(2)}, provenance=Provenance.start("t")
    )
    with pytest.raises(GeosynthError, match=r"x\.safetensors: no tensor 'means'.*found: other"):
        load_channel_means(path)
    with pytest.raises(GeosynthError, match=r"x\.safetensors: no tensor 'embeddings'"):
        load_embeddings(path)


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(GeosynthError, match=r"junk\.safetensors: not a readable safetensors"):
        load_tensors(junk)
    with pytest.raises(GeosynthError, match="no such file"):
        load_tensors(tmp_path / "absent.safetensors")


def test_inconsistent_labels_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(GeosynthError, match="one label per embedding"):
        Embeddings(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(GeosynthError, match="only 2 class names"):
        Embeddings(torch.zeros(3, 2), torch.tensor([0, 1, 2]), ["a", "b"])
    with pytest.raises(GeosynthError, match="K x C"):
        ChannelMeans(torch.zeros(3, 4), ["a", "b"])


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_a_directory_whole(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["dir"]


def test_fingerprint_follows_content_not_timestamps(tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a.txt").write_text("A")
    first = fingerprint(d)
    (d / "sub" / "a.txt").write_text("A")  # rewritten, same bytes
    assert fingerprint(d) == first
    (d / "sub" / "a.txt").write_text("B")
    assert fingerprint(d) != first
    assert fingerprint("org/model-id").startswith("name:")
