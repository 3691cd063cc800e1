"""The shell commands of the docs (README.md and docs/*.md code blocks), as a test reads them.

A fenced block in bash, sh, shell or no language is read as a shell script: backslash
continuations and lines inside an open quote are joined, comments dropped, and each command is
cut at ``|``, ``&&``, ``||``, ``;`` and ``&``. A command runs geosynth when its first word (after
``VAR=value`` assignments) is ``geosynth``, or when a launcher runs ``-m geosynth`` (torchrun,
accelerate launch, python). ``echo TEXT > FILE`` commands are kept too, so that a test can
replay a block (:func:`steps`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
_SHELL = {"", "bash", "sh", "shell", "console"}
_SEPARATORS = {"|", "||", "&&", ";", "&", ";;"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Step:
    """One command of a doc block: ``geosynth WORDS...`` or ``echo TEXT > PATH``."""

    doc: Path
    line: int  # 1-based line of the command's first line in ``doc``
    kind: str  # "geosynth" or "write"
    words: tuple[str, ...]  # geosynth: the words after ``geosynth``; write: (path, text)
    text: str  # the command as written (continuations joined)
    jq: str | None = None  # the filter of a ``| jq FILTER`` the output is piped to

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"

    @property
    def partial(self) -> bool:
        """True when the docs abbreviate it (``...``): only its options can be checked."""
        return any("..." in w for w in self.words)


def shell_blocks(doc: Path) -> list[tuple[int, str]]:
    """(first line, text) of every shell code block of ``doc``."""
    text = doc.read_text()
    out = []
    for m in _FENCE.finditer(text):
        if m.group(1) in _SHELL:
            out.append((text.count("\n", 0, m.start(2)) + 1, m.group(2)))
    return out


def _logical_lines(text: str, first: int) -> list[tuple[int, str]]:
    """Commands of a script: continuation lines and open quotes joined, with their line."""
    out: list[tuple[int, str]] = []
    buf, start = "", first
    for i, line in enumerate(text.splitlines()):
        if not buf:
            start = first + i
        buf = f"{buf}\n{line}" if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        try:
            shlex.split(buf, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        if buf.strip():
            out.append((start, buf))
        buf = ""
    return out


def _tokens(command: str) -> list[str]:
    lex = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def _segments(tokens: list[str]) -> list[list[str]]:
    segs: list[list[str]] = [[]]
    for t in tokens:
        if t in _SEPARATORS:
            segs.append([])
        else:
            segs[-1].append(t)
    return [s for s in segs if s]


_OPTIONAL = re.compile(r"^\$\{\w+:\+(.*)\}$", re.S)


def _expand_optional(words: list[str]) -> list[str]:
    """``${VAR:+--flag value}`` (words only when VAR is set; the lexer may have split it) read
    as if VAR were set, so that the optional words are checked too."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w, i = words[i], i + 1
        if w.startswith("${") and ":+" in w:
            while not w.endswith("}") and i < len(words):
                w, i = f"{w} {words[i]}", i + 1
        m = _OPTIONAL.match(w)
        out.extend(m.group(1).split() if m else [w])
    return out


def steps(doc: Path, block: tuple[int, str]) -> list[Step]:
    """The geosynth and ``echo > FILE`` commands of one block, in order."""
    out = []
    for line, command in _logical_lines(block[1], block[0]):
        segments = _segments(_tokens(command))
        for n, seg in enumerate(segments):
            after = segments[n + 1] if n + 1 < len(segments) else []
            jq = after[1] if len(after) > 1 and after[0] == "jq" and "| jq" in command else None
            while seg and _ASSIGNMENT.match(seg[0]):
                seg = seg[1:]
            if not seg:
                continue
            if seg[0] == "echo" and len(seg) == 4 and seg[2] == ">":
                out.append(Step(doc, line, "write", (seg[3], seg[1]), command))
                continue
            if seg[0] == "geosynth":
                words = seg[1:]
            elif (
                "-m" in seg
                and seg.index("-m") + 1 < len(seg)
                and seg[seg.index("-m") + 1] == "geosynth"
            ):
                words = seg[seg.index("-m") + 2 :]
            else:
                continue
            if not words or not re.match(r"^[a-z][a-z-]*$", words[0]):
                continue  # prose that mentions geosynth (a diagram), not a command
            if ">" in words:  # output redirection is the shell's, not an argument
                words = words[: words.index(">")]
            words = _expand_optional(words)
            out.append(Step(doc, line, "geosynth", tuple(words), command, jq))
    return out


def all_steps(docs: list[Path] = DOC_FILES) -> list[Step]:
    """Every geosynth command of every shell block of the docs."""
    return [
        s for doc in docs for block in shell_blocks(doc) for s in steps(doc, block)
        if s.kind == "geosynth"
    ]  # fmt: skip


def block_with(doc: Path, marker: str) -> list[Step]:
    """The steps of the one shell block of ``doc`` whose text holds ``marker``."""
    found = [b for b in shell_blocks(doc) if marker in b[1]]
    assert len(found) == 1, f"{doc.name}: {len(found)} shell blocks hold {marker!r}, expected 1"
    return steps(doc, found[0])


#: the real data the docs name as ``../shared/data`` (a checkout's sibling folder)
SHARED = REPO.parent / "shared" / "data"


def replay(
    cli: Callable[..., Any],
    block: list[Step],
    extra: Callable[[list[str]], list[str]],
    *,
    substitute: dict[str, str] | None = None,
    skip: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run a doc block in the current folder as a shell would: ``echo TEXT > FILE`` writes the
    file, each geosynth command runs in-process (``cli``) with ``../shared/data`` pointing at
    :data:`SHARED`, words in ``substitute`` replaced (placeholders such as ``val/``) and the
    options ``extra(words)`` returns appended (they win over the block's, as the last value of
    an option does). Commands whose words hold a key of ``skip`` are not run. Returns each run
    command's result by its first word(s) (``"generate"``, ``"data info"``), and ``skipped``."""
    results: dict[str, Any] = {"skipped": []}
    for step in block:
        if step.kind == "write":
            Path(step.words[0]).write_text(step.words[1])
            continue
        words = [
            (substitute or {}).get(w, w).replace("../shared/data", str(SHARED)) for w in step.words
        ]
        reason = next((r for key, r in (skip or {}).items() if key in step.words), None)
        if reason is not None:
            results["skipped"].append((step.where, reason))
            continue
        res = cli(*words, *extra(words))
        assert res.code == 0, (
            f"{step.where}: geosynth {' '.join(words)} exited {res.code}: {res.err}"
        )
        name = " ".join(words[:2]) if words[0] in ("data", "toy", "lora") else words[0]
        results[name] = res
    return results


def cheap_options(
    models: dict[str, Path], classes: str | None = None
) -> Callable[[list[str]], list[str]]:
    """What makes a docs command cheap here: the toy models of tests/conftest.py where the docs
    rely on a default model, 32 px, 2 training or sampling steps, 3 images per class, one seed
    and epoch; ``classes`` (comma-separated) narrows the commands that read a real dataset.
    ``generate`` and ``channel-means --lora`` get no ``--model``: they take the one the LoRA
    card records, as the README says."""
    sd, dinov2, clip = str(models["sd"]), str(models["dinov2"]), str(models["clip"])
    subset = [] if classes is None else ["--classes", classes]

    def extra(words: list[str]) -> list[str]:
        cmd = words[0]
        if cmd == "finetune":
            return ["--model", sd, "--max-steps", "2", "--resolution", "32", "--batch-size",
                    "4", "--checkpoint-every", "1000", *subset]  # fmt: skip
        if cmd == "channel-means":
            return [*subset, *([] if "--lora" in words else ["--model", sd])]
        if cmd == "generate":
            return ["--per-class", "3", "--steps", "2"]
        if cmd == "evaluate":
            return [*subset, *([] if "--features" in words else ["--features", dinov2])]
        if cmd == "train-clf":
            return ["--clip-model", f"local-dir:{clip}", "--epochs", "1", "--seeds", "0",
                    "--workers", "0"]  # fmt: skip
        return []

    return extra
