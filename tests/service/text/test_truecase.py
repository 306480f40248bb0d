"""The truecaser: which sentences it rewrites, the table it learns, and what it writes."""

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.text.truecase import Casing, Truecaser, casing

TRAINING = [
    "A man walks through New York with his dog.",
    "Two women sit in a cafe in Paris.",
    "People watch a parade in New York.",
    "Then I see a new car in the street.",
    "A new car is parked near the USA pavilion.",
    "Paris is seen from above.",  # first word: not counted
]


@pytest.fixture(scope="module")
def truecaser() -> Truecaser:
    return Truecaser.fit(TRAINING)


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("A MAN IS RIDING A BIKE.", Casing.UPPER),
        ("TWO DOGS", Casing.UPPER),
        ("a man is riding a bike.", Casing.LOWER),
        ("2 men sit on a bench.", Casing.LOWER),
        ("A Man Is Riding A Bike.", Casing.TITLE),
        ("A Man in a Blue Shirt Is Playing the Guitar.", Casing.TITLE),  # headline style
        ("Two Dogs Play", Casing.TITLE),
        ("A MAN IS RUNNING 5 km.", Casing.UPPER),  # three of its four longer words
        ("yesterday I met bill in the USA.", Casing.LOWER),  # "I" and acronyms say nothing
        ("I met bill.", Casing.ORDINARY),  # but a first word with a capital does
        # Too short to tell from a sentence of names, which must be read as written:
        ("Welcome to New York City!", Casing.ORDINARY),
        ("A Man Is Riding a Bike", Casing.ORDINARY),
        ("A man is riding a bike.", Casing.ORDINARY),
        ("Here is Rod Stewart in Concert singing Live with Pat Benatar.", Casing.ORDINARY),
        ("A man in a USA shirt waves.", Casing.ORDINARY),
        ("NASA.", Casing.ORDINARY),  # one word: an acronym or a shout, cannot tell
        ("Hello", Casing.ORDINARY),
        ("123 456 !", Casing.ORDINARY),
        ("", Casing.ORDINARY),
    ],
)
def test_casing_of_a_sentence(sentence, expected):
    assert casing(sentence) is expected


def test_the_table_keeps_the_usual_form_of_words_that_have_a_capital_inside_sentences(truecaser):
    # "new": "New York" twice, "new car" twice: a tie, so it stays in small letters
    assert truecaser.forms == {"i": "I", "paris": "Paris", "york": "York", "usa": "USA"}


def test_a_tie_keeps_the_word_in_small_letters():
    assert Truecaser.fit(["See the Rose.", "See the rose."]).forms == {}


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("A MAN WALKS THROUGH PARIS.", "A man walks through Paris."),
        ("A Man Walks Through Paris With A Dog.", "A man walks through Paris with a dog."),
        ("a man walks through paris.", "A man walks through Paris."),
        ("i see the usa pavilion", "I see the USA pavilion"),
        ('"TWO DOGS PLAY!" HE SAID.', '"Two dogs play!" he said.'),
        ("2 MEN SIT IN PARIS.", "2 men sit in Paris."),  # no capital for a word after a number
        ("  ¿QUÉ PASA AQUÍ?", "  ¿Qué pasa aquí?"),
        ("THE MAN'S DOG RUNS.", "The man's dog runs."),
    ],
)
def test_restore_writes_a_sentence_in_the_usual_case(truecaser, sentence, expected):
    assert truecaser.restore(sentence) == expected


@pytest.mark.parametrize(
    "sentence",
    ["A man in a USA shirt waves.", "Then a MAN runs to paris.", "NASA.", "i", "2 + 2 = 4"],
)
def test_a_sentence_in_ordinary_case_is_left_as_written(truecaser, sentence):
    assert truecaser.restore(sentence) is sentence


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60))
def test_restore_changes_the_case_of_letters_only(sentence):
    restored = Truecaser.fit(TRAINING).restore(sentence)
    assert restored.casefold() == sentence.casefold()


def test_the_table_is_saved_and_read_back_as_json(truecaser, tmp_path):
    path = tmp_path / "truecase.json"
    truecaser.to_json(path)
    saved = json.loads(path.read_text("utf-8"))
    assert saved == {"forms": truecaser.forms, "followed": {"new york": "New"}, "preceded": {}}
    read = Truecaser.from_json(path)
    assert (read.forms, read.followed, read.preceded) == (truecaser.forms, {"new york": "New"}, {})


@pytest.mark.parametrize(
    "content",
    [
        *['{"forms": {"paris": "London"}}', '{"forms": ["Paris"]}', '["Paris"]'],
        *['{"forms": {"a": 1}}', '{"forms": {"a": "A"}', "", '{"followed": {}}'],
        *['{"forms": {}, "followed": {"new york": "York"}}'],
        *['{"forms": {}, "preceded": {"John major": "Major"}}'],
    ],
)
def test_a_table_that_is_not_one_is_refused(tmp_path, content):
    path = tmp_path / "truecase.json"
    path.write_text(content, "utf-8")
    with pytest.raises(ValueError, match=r"truecase\.json: not a truecaser table: "):
        Truecaser.from_json(path)


def test_restore_parts_rewrites_each_token_in_its_place(truecaser):
    assert truecaser.restore_parts(["a", "man", "walks", "through", "paris", "."]) == [
        *["A", "man", "walks", "through", "Paris", "."]
    ]
    assert truecaser.restore_parts(['"', "TWO", "DOGS", "!", '"']) == ['"', "Two", "dogs", "!", '"']
    assert truecaser.restore_parts(["2", "MEN", "SIT", "."]) == ["2", "men", "sit", "."]
    assert truecaser.restore_parts(["A", "man", "in", "Paris"]) == ["A", "man", "in", "Paris"]


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8))
def test_restore_parts_writes_what_restore_writes_for_the_parts_joined(parts):
    truecaser = Truecaser.fit(TRAINING)
    assert " ".join(truecaser.restore_parts(parts)) == truecaser.restore(" ".join(parts))


def test_only_the_casings_asked_for_are_rewritten(truecaser):
    lower_only = Truecaser(truecaser.forms, rewrites={Casing.LOWER})
    assert lower_only.restore("i see paris") == "I see Paris"
    for sentence in ["A MAN WALKS THROUGH PARIS.", "A Man Walks Through Paris."]:
        assert lower_only.restore(sentence) == sentence


def test_a_word_takes_the_form_it_usually_has_next_to_its_neighbour():
    sentences = ["We met John Major there.", "Then John Major spoke.", "A major road."]
    sentences += ["It is a major road.", "No major news.", "Ask John.", *TRAINING]
    truecaser = Truecaser.fit(sentences)
    assert truecaser.preceded == {"john major": "Major"}
    assert truecaser.followed == {"new york": "New"}  # "New York" twice; "new car" twice
    assert truecaser.restore("i met john major in new york") == "I met John Major in New York"
    assert truecaser.restore("a major new car in paris") == "A major new car in Paris"


def test_a_pair_seen_once_is_not_kept():
    truecaser = Truecaser.fit(["We met John Major.", "A major road.", "The major road."])
    assert truecaser.preceded == {}


def test_usual_forms_come_from_sentences_of_ordinary_case_only():
    """Headlines in capitals would make common words usually capitals ("JOINS")."""
    sentences = ["SMITH JOINS CLUB", "JONES JOINS TEAM", "He joins them.", "He comes from Houston."]
    assert Truecaser.fit(sentences).forms == {"houston": "Houston"}


def test_in_a_sentence_in_small_letters_words_with_capitals_stay(truecaser):
    assert truecaser.restore("i see the USA pavilion in paris") == "I see the USA pavilion in Paris"
    assert truecaser.restore("then I walk to paris.") == "Then I walk to Paris."


def test_restore_takes_time_in_proportion_to_the_text():
    """A text of thousands of words after a long run of punctuation took seconds."""
    truecaser = Truecaser.fit(TRAINING)
    text = "-" * 10_000 + " a" * 4_999
    started = time.process_time()
    truecaser.restore(text)
    truecaser.restore_parts([text, "b"])
    assert time.process_time() - started < 0.5
