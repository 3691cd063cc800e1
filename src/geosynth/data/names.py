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


#: Words that start with a vowel letter but a consonant sound ("a university"), and words that
#: start with a silent h ("an hour"): the exceptions to choosing "an" by the first letter.
_CONSONANT_SOUND = ("uni", "use", "usu", "uti", "ura", "ure", "uro", "eu", "ewe", "one", "once")
_VOWEL_SOUND = ("hour", "honest", "honor", "honour", "heir", "8", "11", "18")
#: the article "a" right before the template's field (not an escaped "{{}}")
_A_BEFORE_FIELD = re.compile(r"(?<![\w'])([Aa])(\s+)(?=(?<!\{)\{\})")


def takes_an(words: str) -> bool:
    """Whether English puts "an" before ``words`` ("an annual crop", "a urban area" is wrong:
    "an urban area"; "a university", "an hour")."""
    w = words.strip().lower()
    if not w:
        return False
    if w.startswith(_VOWEL_SOUND):
        return True
    if w.startswith(_CONSONANT_SOUND):
        return False
    return w[0] in "aeiou"


def fill_prompt(template: str, words: str, *, articles: bool = True) -> str:
    """``template`` with ``words`` (a prompt name) in its ``{}``; with ``articles`` an "a" right
    before the field becomes "an" where the words need it ("a satellite photo of an annual
    crop"). ``articles=False`` fills the template literally, as geosynth did before (what LoRAs
    trained then were trained on)."""
    if articles and takes_an(words):
        template = _A_BEFORE_FIELD.sub(lambda m: m.group(1) + "n" + m.group(2), template, count=1)
    return template.format(words)
