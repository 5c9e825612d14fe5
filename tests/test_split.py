from collections import Counter

from sqlmodel import select

from store.db import transaction
from store.examples import add_examples, labelled_examples
from store.split import assign_split, normalise, text_hash
from store.tables import Query, Split


def test_normalising_case_and_spaces_makes_one_text():
    assert normalise("  Where is   MY card?\n") == "where is my card?"
    assert text_hash("Where is my card?") == text_hash("where  is my CARD?")
    assert text_hash("Where is my card?") != text_hash("Where is my card")


def test_exact_duplicates_are_stored_once(sessions):
    with transaction(sessions) as session:
        result = add_examples(session, examples=[("Where is my card?", "Cards"), ("where is  my CARD?", "Cards"),
                                                 ("WHERE IS MY CARD?", "Transfers")])
    assert (result.added, result.duplicates, result.conflicting_duplicates) == (1, 2, 1)
    with sessions() as session:
        assert [(e.text, e.label) for e in labelled_examples(session)] == [("Where is my card?", "Cards")]


def test_a_text_never_moves_between_splits(sessions):
    first = [(f"question number {i} about cards", "Cards") for i in range(40)]
    with transaction(sessions) as session:
        add_examples(session, examples=first)
    with sessions() as session:
        before = {q.text: q.split for q in session.exec(select(Query))}
    more = [(f"another question {i} about cards", "Cards") for i in range(200)]
    with transaction(sessions) as session:
        add_examples(session, examples=more + [(t.upper(), "Transfers") for t, _ in first])
    with sessions() as session:
        after = {q.text: q.split for q in session.exec(select(Query))}
    assert all(after[text] == split for text, split in before.items())


def test_split_follows_the_hash_and_holds_a_fifth_out(sessions):
    with transaction(sessions) as session:
        add_examples(session, examples=[(f"message {i}", "Cards") for i in range(500)])
    with sessions() as session:
        counts = Counter(e.split for e in labelled_examples(session))
    assert 0.17 < counts[Split.HOLDOUT] / 500 < 0.23


def test_every_department_with_six_examples_keeps_holdout_examples(sessions):
    examples = [(f"text {i} for department {d}", f"dept{d}") for d in range(30) for i in range(6)]
    with transaction(sessions) as session:
        add_examples(session, examples=examples)
    with sessions() as session:
        counts = Counter((e.label, e.split) for e in labelled_examples(session))
    for d in range(30):
        assert counts[(f"dept{d}", Split.HOLDOUT)] >= 1
        assert counts[(f"dept{d}", Split.TRAIN)] >= 4


def test_first_example_of_a_department_trains():
    assert assign_split("0" * 64, n_train=0, n_holdout=0) == Split.TRAIN
