"""Prompt-friendly class names: "AnnualCrop" -> "annual crop", "sea_lake" -> "sea lake"."""

import re

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def prompt_name(class_name: str) -> str:
    """Split CamelCase, underscores and hyphens into lower-case words for text prompts.

    Acronyms stay together ("SARShip" -> "sar ship"); digits stay attached to their word.
    """
    spaced = _CAMEL.sub(" ", class_name.strip())
    return " ".join(re.split(r"[\s_\-]+", spaced)).strip().lower()


def safe_dirname(class_name: str) -> str:
    """A directory name for a class: path separators and control characters replaced."""
    cleaned = re.sub(r"[\\/\x00-\x1f]", "_", class_name).strip()
    if cleaned in {"", ".", ".."}:
        cleaned = f"class_{cleaned.strip('.') or 'unnamed'}"
    return cleaned
