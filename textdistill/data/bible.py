"""Built-in generation data: the World English Bible and the Reina-Valera 1909, aligned verse by verse.

Both are public-domain SWORD modules from Debian (`sword-text-web`, `sword-text-sparv`), read with
`diatheke -f internal` (OSIS markup). Not `-f plain`: it repeats stale psalm headings on thousands of
lines. `-f internal` repeats them too, but as the same markup before the reference, which is how
`parse_internal` tells a fresh heading from a stale one.

One whole-range query per module reads every verse (seconds, not the hours of one query per verse); the
cleaned text is then cached as JSON under `cache_root()/data/`, keyed by the modules' versions and this
module's format, so later calls read a small file.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from textdistill.atomic import atomic_write
from textdistill.cache import cache_root
from textdistill.errors import TextDistillError

ENGLISH_MODULE = "engWEB2015eb"  # World English Bible 2015, versification NRSVA (has the deuterocanon)
SPANISH_MODULE = "spaRV1909eb"  # Reina-Valera 1909, versification KJV (66 books)
APT_INSTALL = "apt-get install diatheke sword-text-web sword-text-sparv"
WHOLE_RANGE = "Gen 1:1-Rev 22:21"
FORMAT_VERSION = 1  # bump when the parsing or cleaning changes, so old caches are not read
SWORD_CONF_DIRS = ("/usr/share/sword/mods.d", "~/.sword/mods.d")

# A verse line: optional markup (stale or fresh headings, line-group milestones), then "Book C:V: text".
_REF = re.compile(r"^(?P<book>[^<>\n]{1,40}?) (?P<chapter>\d+):(?P<verse>\d+): ")
_LEADING_TAGS = re.compile(r"^(?:\s*<[^>]*>)*\s*")
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title>", re.S)
_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_GLOSSARY = re.compile(r"<div\b[^>]*type=\"glossary\".*", re.S)  # the WEB appends a glossary to Rev 22:21
# Tags that end a line or a quotation: they separate words even when the module puts no space there
# ("only born</q><q marker=\"\">Son"); word-level tags (w, transChange, seg) do not.
_BREAK_TAG = re.compile(r"</?(?:l|lg|lb|q|div|p|chapter|milestone|item|list|speaker|title|br)\b[^>]*>")
_ADJACENT_WORDS = re.compile(r"</w>(?=<w\b)")  # "God</w><w ...>created": two words, no space in the source
_TAG = re.compile(r"<[^>]*>")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)\]])")


def clean_markup(fragment: str) -> str:
    """Plain text of an OSIS fragment: notes and tags removed, entities decoded, whitespace normalised."""
    text = _NOTE.sub(" ", fragment)
    text = _ADJACENT_WORDS.sub("</w> ", text)
    text = _BREAK_TAG.sub(" ", text)
    text = html.unescape(_TAG.sub("", text))
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))


def parse_internal(output: str) -> dict[str, str]:
    """{"Book C:V": clean text} from `diatheke -f internal` output, in the module's order.

    Each verse starts a line (lines without a reference continue the previous verse; the closing
    "(module)" line is dropped). A `<title>` before the reference is kept only when that markup differs
    from the previous verse's: diatheke repeats the last heading's markup, ids included, on every later
    line, while a fresh heading (a psalm's superscription, a Psalm 119 letter) comes with new ids. The
    kept heading is prepended to the verse, as the Reina-Valera prints it inside verse 1.
    """
    verses: dict[str, list[str]] = {}
    current: str | None = None
    previous_prefix = None
    for line in output.splitlines():
        body = _LEADING_TAGS.sub("", _TITLE.sub("", line))
        match = _REF.match(body)
        if match is None:
            if current is not None and not re.fullmatch(r"\s*\([^()\s]+\)\s*", line):
                verses[current].append(line)
            continue
        prefix = line[: line.find(match.group(0))]
        heading = [] if prefix == previous_prefix else _TITLE.findall(prefix)
        previous_prefix = prefix
        current = f"{match.group('book').strip()} {match.group('chapter')}:{match.group('verse')}"
        verses[current] = [" ".join(heading), body[match.end():]]
    return {ref: clean_markup(_GLOSSARY.sub("", "\n".join(parts))) for ref, parts in verses.items()}


def chapter_of(ref: str) -> str:
    """"I John 3:16" -> "I John 3"."""
    return ref.rsplit(":", 1)[0]


def align(english: dict[str, str], spanish: dict[str, str]) -> list[tuple[str, str, str]]:
    """(reference, English, Spanish) for verses non-empty in both, in the English text's order.

    A verse empty or absent on either side is dropped (the WEB leaves verses such as Acts 8:37 empty,
    as modern critical texts do). When a chapter ends with verses that only one text fills, the
    texts split the chapters differently (the Reina-Valera follows Hebrew chapter breaks in places:
    its Numbers 13:1 is the WEB's 12:16), so that chapter and the next one of the book are dropped
    whole: their verses are shifted against each other. A chapter where only the WEB ends early (it
    folds Acts 19:41 into 19:40) is dropped alone.
    """
    by_chapter: dict[str, set[int]] = {}
    for ref in list(english) + list(spanish):
        by_chapter.setdefault(chapter_of(ref), set()).add(int(ref.rsplit(":", 1)[1]))
    shifted: set[str] = set()
    for chapter, numbers in by_chapter.items():
        filled = [(bool(english.get(f"{chapter}:{v}")), bool(spanish.get(f"{chapter}:{v}"))) for v in sorted(numbers)]
        while filled and filled[-1] == (False, False):
            filled.pop()
        if filled and filled[-1] == (False, True):  # the WEB ends early: merged or omitted, shifted in the chapter
            shifted.add(chapter)
        elif filled and filled[-1] == (True, False):  # the Reina-Valera moved the verses into the next chapter
            book, number = chapter.rsplit(" ", 1)
            shifted |= {chapter, f"{book} {int(number) + 1}"}
    return [(ref, text, spanish[ref]) for ref, text in english.items()
            if text and spanish.get(ref) and chapter_of(ref) not in shifted]


def read_module(module: str, keys: str = WHOLE_RANGE) -> str:
    """`diatheke -b module -f internal -k keys`: one process for the whole range (per-verse calls take hours)."""
    if shutil.which("diatheke") is None:
        raise TextDistillError(f"the built-in Bible data needs diatheke and two SWORD modules; run: {APT_INSTALL}")
    result = subprocess.run(["diatheke", "-b", module, "-f", "internal", "-k", keys],
                            capture_output=True, check=False)
    text = result.stdout.decode("utf-8", errors="replace")
    if result.returncode != 0 or not _REF.match(_LEADING_TAGS.sub("", _TITLE.sub("", text[:2000]))):
        raise TextDistillError(f"diatheke could not read the SWORD module {module!r} (exit {result.returncode}: "
                               f"{(result.stderr or result.stdout)[:200].decode(errors='replace').strip()!r}); "
                               f"run: {APT_INSTALL}")
    return text


def _module_version(module: str) -> str:
    for folder in SWORD_CONF_DIRS:
        conf = Path(folder).expanduser() / f"{module.lower()}.conf"
        if conf.is_file():
            return hashlib.sha256(conf.read_bytes()).hexdigest()[:16]
    return "unknown"


def _cached(name: str, build) -> object:
    """JSON `name` under cache_root()/data/, keyed by module versions and format; built and written atomically."""
    key = hashlib.sha256(json.dumps([FORMAT_VERSION, _module_version(ENGLISH_MODULE),
                                     _module_version(SPANISH_MODULE)]).encode()).hexdigest()[:16]
    path = cache_root() / "data" / f"{name}-{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            pass  # a damaged file is rebuilt
    value = build()
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8"))
    return value


def parallel_verses() -> list[tuple[str, str]]:
    """(English, Spanish) verse pairs, WEB and Reina-Valera 1909, in canonical order (30,485 pairs)."""
    rows = _cached("bible-en-es", lambda: [[ref, en, es] for ref, en, es in
                                           align(parse_internal(read_module(ENGLISH_MODULE)),
                                                 parse_internal(read_module(SPANISH_MODULE)))])
    return [(en, es) for _, en, es in rows]


def english_verses() -> list[str]:
    """Every non-empty verse of the World English Bible (deuterocanon included), in order: an LM corpus."""
    rows = _cached("bible-en", lambda: [text for text in parse_internal(read_module(ENGLISH_MODULE)).values() if text])
    return list(rows)


def split(items: Sequence, seed: int, validation: float = 0.05, test: float = 0.05) -> tuple[list, list, list]:
    """(train, validation, test): a seeded shuffle of `items`, cut by the given fractions.

    The same items and seed always give the same split (Python's `random.Random(seed)`, stable across
    versions for `shuffle`).
    """
    if not (0 <= validation and 0 <= test and validation + test < 1):
        raise TextDistillError(f"split fractions must be >= 0 and sum below 1, got validation={validation}, test={test}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_test, n_val = round(len(items) * test), round(len(items) * validation)
    pick = [items[i] for i in order]
    return pick[n_test + n_val:], pick[n_test:n_test + n_val], pick[:n_test]
