"""Files that geosynth steps hand to each other: safetensors tensors with JSON metadata.

Every output is written atomically (:mod:`.atomic`: a temporary name in the same directory, then a
rename) so a killed run never leaves a half-written file that a later step would trust, and every
output gets a provenance sidecar (:mod:`.provenance`: argv, version, input fingerprints, seeds,
start and end time). :mod:`.tensors` reads and writes safetensors files, :mod:`.typed` the typed
ones (embeddings, channel means). The formats are documented in ``docs/formats.md``.
"""

from geosynth.artifacts.atomic import (
    atomic_path,
    check_replaceable,
    clean_stale_temporaries,
    clean_temporaries,
    output_path,
    write_json,
)
from geosynth.artifacts.jsontext import json_text
from geosynth.artifacts.provenance import (
    DIR_PROVENANCE_NAME,
    NEUTRAL_FLAGS,
    NEUTRAL_OPTIONS,
    PROVENANCE_SUFFIX,
    Provenance,
    combine_fingerprints,
    content_argv,
    file_digest,
    fingerprint,
    provenance_path,
    settings_diff,
    write_provenance,
)
from geosynth.artifacts.tensors import (
    TensorFile,
    canonicalize_safetensors,
    check_finite,
    load_tensors,
    load_torch_state,
    safetensors_bytes,
    save_tensors,
)
from geosynth.artifacts.typed import (
    ChannelMeans,
    Embeddings,
    decode_strings,
    encode_strings,
    load_channel_means,
    load_embeddings,
    save_channel_means,
    save_embeddings,
)

__all__ = [
    "DIR_PROVENANCE_NAME",
    "NEUTRAL_FLAGS",
    "NEUTRAL_OPTIONS",
    "PROVENANCE_SUFFIX",
    "ChannelMeans",
    "Embeddings",
    "Provenance",
    "TensorFile",
    "atomic_path",
    "canonicalize_safetensors",
    "check_finite",
    "check_replaceable",
    "clean_stale_temporaries",
    "clean_temporaries",
    "combine_fingerprints",
    "content_argv",
    "decode_strings",
    "encode_strings",
    "file_digest",
    "fingerprint",
    "json_text",
    "load_channel_means",
    "load_embeddings",
    "load_tensors",
    "load_torch_state",
    "output_path",
    "provenance_path",
    "safetensors_bytes",
    "save_channel_means",
    "save_embeddings",
    "save_tensors",
    "settings_diff",
    "write_json",
    "write_provenance",
]
