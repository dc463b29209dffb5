import shutil

import pytest

from textdistill.data import bible
from textdistill.errors import TextDistillError

WEB = (
    'Genesis 1:1: <w savlm="strong:H0430">In</w> <w savlm="x">the</w> beginning, <w>God</w><w>created</w> it.\n'
    '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="g1"/> <l sID="g2"/>Psalms 3:1: '
    'Yahweh, how<l eID="g2"/> <l sID="g3"/>many! <div sID="g4" type="x-p"/>\n'
    '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="g1"/> <l sID="g2"/>Psalms 3:2: '
    '<q marker="">only born</q><q marker="">Son</q> &amp; “no help” .\n'
    'a continuation line\n'
    'John 1:1: The grace be with you. <div sID="g9" type="glossary"/> <item>Abba Father</item>\n'
    '(engWEB2015eb)\n'
)


def test_parse_internal_strips_markup_and_stale_headings():
    verses = bible.parse_internal(WEB)
    assert list(verses) == ["Genesis 1:1", "Psalms 3:1", "Psalms 3:2", "John 1:1"]
    assert verses["Genesis 1:1"] == "In the beginning, God created it."
    assert verses["Psalms 3:1"] == "A Psalm by David. Yahweh, how many!"  # fresh heading kept
    assert verses["Psalms 3:2"] == "only born Son & “no help”. a continuation line"  # stale one dropped
    assert verses["John 1:1"] == "The grace be with you."  # the appended glossary is cut


def test_align_drops_empty_verses_and_shifted_chapters():
    english = {"A 1:1": "a", "A 1:2": "b", "A 1:3": "", "A 1:4": "d", "B 1:1": "x", "B 1:2": "y",
               "B 2:1": "z", "C 1:1": "p", "C 1:2": "q"}
    spanish = {"A 1:1": "á", "A 1:2": "é", "A 1:3": "í", "A 1:4": "ó", "B 1:1": "x", "B 1:2": "",
               "B 2:1": "y", "C 1:1": "p"}
    pairs = bible.align(english, spanish)
    # A 1:3 empty in English: that verse only; B 1 ends early in Spanish: B 1 and B 2 shifted;
    # C 1:2 missing in Spanish at the end: C 1 dropped
    assert pairs == [("A 1:1", "a", "á"), ("A 1:2", "b", "é"), ("A 1:4", "d", "ó")]


def test_split_is_deterministic_and_disjoint():
    items = list(range(1000))
    train, val, test = bible.split(items, seed=3, validation=0.1, test=0.05)
    assert (len(train), len(val), len(test)) == (850, 100, 50)
    assert sorted(train + val + test) == items
    assert bible.split(items, seed=3, validation=0.1, test=0.05) == (train, val, test)
    assert bible.split(items, seed=4, validation=0.1, test=0.05)[2] != test
    with pytest.raises(TextDistillError):
        bible.split(items, seed=0, validation=0.6, test=0.5)


def test_missing_diatheke_names_the_apt_packages(monkeypatch):
    monkeypatch.setattr(bible.shutil, "which", lambda name: None)
    with pytest.raises(TextDistillError, match="apt-get install diatheke sword-text-web sword-text-sparv"):
        bible.read_module(bible.ENGLISH_MODULE)


@pytest.mark.skipif(shutil.which("diatheke") is None, reason="diatheke and the SWORD modules are not installed")
def test_real_modules(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path))
    pairs = bible.parallel_verses()
    assert 30_000 < len(pairs) < 31_200
    assert ("In the beginning, God created the heavens and the earth.",
            "EN el principio crió Dios los cielos y la tierra.") == pairs[0]
    assert all(en and es and "<" not in en + es for en, es in pairs)
    assert bible.parallel_verses() == pairs  # second call: from the cache file
    assert len(list((tmp_path / "data").glob("bible-en-es-*.json"))) == 1
    english = bible.english_verses()
    assert len(english) > len(pairs) and english[0] == pairs[0][0]
