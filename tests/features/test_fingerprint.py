"""The embeddings cache keys local weights by their files: a classifier (``clf:DIR``) retrained
into the same folder must not reuse the embeddings of the old one."""

from __future__ import annotations

import os
from pathlib import Path

from geosynth.features.spec import model_fingerprint


def test_a_classifier_folder_is_fingerprinted_by_its_files(tmp_path: Path) -> None:
    clf = tmp_path / "clf" / "seed-0"
    clf.mkdir(parents=True)
    weights = clf / "model.safetensors"
    weights.write_bytes(b"first training")
    first = model_fingerprint(f"clf:{clf}")
    assert first != "hub"  # a local folder, not an immutable hub id
    assert model_fingerprint(f"clf:{clf}") == first  # stable while nothing changes
    weights.write_bytes(b"second training")  # retrained into the same folder
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert model_fingerprint(f"clf:{clf}") != first
