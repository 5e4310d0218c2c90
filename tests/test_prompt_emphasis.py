"""AUTOMATIC1111 emphasis syntax (pipeline.domain.prompt.emphasis)."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.prompt.emphasis import BREAK, WEIGHT_RANGE, is_break, parse_emphasis

Runs = list[tuple[str, float]]


def assert_runs(actual: Runs, expected: Runs) -> None:
    assert [text for text, _ in actual] == [text for text, _ in expected]
    for (_, got), (_, want) in zip(actual, expected, strict=True):
        assert math.isclose(got, want, abs_tol=1e-4), (actual, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1),
                ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.4641), (".", 1.1),
            ],
        ),
        ("plain text", [("plain text", 1.0)]),
        ("(word)", [("word", 1.1)]),
        ("((word))", [("word", 1.21)]),
        ("[word]", [("word", 1 / 1.1)]),
        ("[[word]]", [("word", 1 / 1.21)]),
        ("(word:1.3)", [("word", 1.3)]),
        ("( word : 0.5 )", [(" word ", 0.5)]),
        ("((word:1.5))", [("word", 1.65)]),
        ("[(word:1.5)]", [("word", 1.5 / 1.1)]),
        ("(word:-1)", [("word", -1.0)]),
        ("(word:.5)", [("word", 0.5)]),
        ("(a (b:2) c)", [("a ", 1.1), ("b", 2.2), (" c", 1.1)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        ("[a](b)", [("a", 1 / 1.1), ("b", 1.1)]),
        ("time: 3:00", [("time: 3:00", 1.0)]),
    ],
)  # fmt: skip
def test_weights(text: str, expected: Runs) -> None:
    assert_runs(parse_emphasis(text), expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\(literal\]", [("(literal]", 1.0)]),
        (r"\(x\)", [("(x)", 1.0)]),
        (r"\[x\]", [("[x]", 1.0)]),
        (r"a\\b", [("a\\b", 1.0)]),
        (r"(\(x\))", [("(x)", 1.1)]),
        (r"a \x", [("a \\x", 1.0)]),
        ("trailing \\", [("trailing \\", 1.0)]),
    ],
)
def test_escapes(text: str, expected: Runs) -> None:
    assert_runs(parse_emphasis(text), expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("a ((b", [("a ", 1.0), ("b", 1.21)]),
        ("[a (b", [("a ", 1 / 1.1), ("b", 1.0)]),
        ("stray) close]", [("stray) close]", 1.0)]),
        ("(a]", [("a]", 1.1)]),
        ("[a)", [("a)", 1 / 1.1)]),
        ("[a:1.3]", [("a:1.3", 1 / 1.1)]),
        ("x:1.3)", [("x:1.3)", 1.0)]),
        ("(a:" + "9" * 400 + ")", [("a:" + "9" * 400, 1.1)]),
    ],
)
def test_unbalanced_and_stray_brackets(text: str, expected: Runs) -> None:
    assert_runs(parse_emphasis(text), expected)


@pytest.mark.parametrize("text", ["", "()", "[]", "(())", "((:1.5))"])
def test_empty_text_gives_no_runs(text: str) -> None:
    assert parse_emphasis(text) == []


def test_break_is_a_marker_and_eats_surrounding_whitespace() -> None:
    assert parse_emphasis("a cat BREAK a dog") == [("a cat", 1.0), BREAK, ("a dog", 1.0)]
    assert_runs(parse_emphasis("(a BREAK b)"), [("a", 1.1), BREAK, ("b", 1.1)])
    assert parse_emphasis("x,BREAK,y") == [("x,", 1.0), BREAK, (",y", 1.0)]
    assert parse_emphasis("BREAK") == [BREAK]
    assert is_break(parse_emphasis("a BREAK b")[1])
    assert not is_break(("BREAK", 1.0))


@pytest.mark.parametrize("text", ["BREAKfast", "break", "Break", "aBREAK", "BREAK_1", "BREAK2"])
def test_break_only_as_a_whole_uppercase_word(text: str) -> None:
    assert parse_emphasis(text) == [(text, 1.0)]


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab ()[]:\\.,1-5BREAK\n") | st.characters(), max_size=60))
def test_never_crashes_and_keeps_the_text(text: str) -> None:
    runs = parse_emphasis(text)
    for run_text, weight in runs:
        assert run_text
        assert math.isfinite(weight)
    for before, after in itertools.pairwise(runs):
        if not is_break(before) and not is_break(after):
            assert not math.isclose(before[1], after[1], rel_tol=1e-9), "equal neighbours should merge"
    # Without brackets, escapes or BREAK the text comes back whole at weight 1.
    if not any(mark in text for mark in "()[]\\") and "BREAK" not in text and text:
        assert runs == [(text, 1.0)]


# -- weights stay in WEIGHT_RANGE ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(x:" + "9" * 40 + ")", [("x", 10.0)]),  # finite in float64, infinite in float32
        ("(" * 900 + "x", [("x", 10.0)]),  # 1.1 ** 900 is about 1.8e37
        ("(x:50)", [("x", 10.0)]),
        ("(x:-50)", [("x", -10.0)]),
        ("((x:20):0.1)", [("x", 2.0)]),  # the product is bounded, not each factor
        ("(x:3) (y:-2) (z:9.5)", [("x", 3.0), (" ", 1.0), ("y", -2.0), (" ", 1.0), ("z", 9.5)]),
        ("(" * 8000 + "(x:0) y", [("x", 0.0), (" y", 10.0)]),  # 1.1 ** 8000 overflows, times 0
    ],
)
def test_weights_are_kept_in_range(text: str, expected: Runs) -> None:
    assert WEIGHT_RANGE == (-10.0, 10.0)
    assert_runs(parse_emphasis(text), expected)


def test_deep_square_brackets_stay_finite_and_positive() -> None:
    ((text, weight),) = parse_emphasis("[" * 900 + "x")
    assert text == "x" and 0.0 <= weight < 1e-30


def test_break_made_of_two_merged_runs_is_text() -> None:
    runs = parse_emphasis("(BRE:-1)(AK:-1)")
    assert runs == [("BREAK", -1.0)]
    assert not is_break(runs[0])


# -- time linear in the length of the text ------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "(a" * 20_000,  # unclosed brackets, each around all the text after it
        "[a" * 20_000,
        "(" * 20_000 + "x",
        "(a)" * 20_000,  # 20 000 runs that merge into one
        " " * 50_000 + "x",  # whitespace beside a possible BREAK
        ":" + " " * 50_000,
        "a BREAK " * 10_000,
        "(a:1.1" * 20_000,
    ],
    ids=[
        "unclosed-round",
        "unclosed-square",
        "nested",
        "merging",
        "spaces",
        "colon-spaces",
        "breaks",
        "weights",
    ],
)
def test_parsing_takes_linear_time(text: str) -> None:
    started = time.perf_counter()
    runs = parse_emphasis(text)
    assert time.perf_counter() - started < 1.0, "quadratic parsing is back"  # linear: ~0.05 s
    assert all(math.isfinite(weight) for _, weight in runs)
