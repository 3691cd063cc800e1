"""A CLIP-style byte-level BPE tokenizer learned locally from a small prompt corpus.

Stable Diffusion pipelines need a ``CLIPTokenizer``; the real one's vocabulary lives on the hub. We
learn a small one (a few hundred merges) from prompt-like text, so toy pipelines tokenize
"a satellite photo of a forest" into a handful of word pieces rather than characters. The library
uses it too: a domain pipeline for ``finetune --init scratch`` (:mod:`geosynth.diffusion.vae`)
needs a tokenizer without the hub.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

#: Words the toy tokenizer sees while learning merges: prompt templates and land-cover vocabulary.
CORPUS = """
a satellite photo of a {} . an aerial photo of a {} . a sar image of a {} .
a centered satellite photo of {} . water forest desert cropland urban snow river lake sea
annual crop permanent crop herbaceous vegetation highway industrial pasture residential
ship cargo tanker fishing bulk carrier container dense sparse field road building
""".replace("{}", "")


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def learn_merges(words: Iterable[str], num_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE: repeatedly merge the most frequent adjacent pair (ties broken by the pair)."""
    byte_map = _bytes_to_unicode()
    vocab: Counter[tuple[str, ...]] = Counter()
    for w in words:
        chars = [byte_map[b] for b in w.lower().encode("utf-8")]
        if chars:
            chars[-1] += "</w>"
            vocab[tuple(chars)] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in vocab.items():
            for a, b in itertools.pairwise(word):
                pairs[a, b] += freq
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, freq in vocab.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        vocab = merged
    return merges


def build_toy_tokenizer(
    num_merges: int = 300, model_max_length: int = 77, pad_token: str = EOS
) -> CLIPTokenizer:
    """A CLIPTokenizer whose vocabulary is the 512 byte symbols, the learned merges and the two
    special tokens (start and end of text; the end token also pads, as in CLIP, unless
    ``pad_token`` names another, e.g. ``!`` as SD 2 and SDXL's second tokenizer pad)."""
    from transformers import CLIPTokenizer

    merges = learn_merges(CORPUS.split(), num_merges)
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))

    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=model_max_length,
        pad_token=pad_token,
    )
