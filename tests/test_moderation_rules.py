"""The content rules as pure functions: how prompts and terms are read, what each rule decides,
and which images a channel shows."""

from __future__ import annotations

import pytest

from pipeline.domain.moderation import (
    DEFAULT_NSFW_TERMS,
    MAX_TERM_CHARS,
    MAX_TERMS,
    Policy,
    clean_terms,
    first_match,
    judge,
    normalise,
    showing,
    term_list,
    with_terms,
)

BANNED = Policy(banned_terms=("gore", "blood bath", "暴力"))


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("GORE", "gore"),  # case
        ("ＧＯＲＥ", "gore"),  # full-width letters
        ("Gòré", "gore"),  # accents
        ("ÉLÈVE Straße", "eleve strasse"),  # case folding beyond ASCII
        ("(((gore)))", "gore"),  # emphasis brackets
        ("[gore]", "gore"),
        ("(gore:1.4)", "gore"),  # a weight
        ("(gore: -0.5)", "gore"),
        ("gore, blood;   bath", "gore blood bath"),  # punctuation between words
        ("g o r e", "gore"),  # letters spelled out one by one
        ("a  red\tfox\nin snow", "a red fox in snow"),
    ],
)
def test_normalise_reads_what_the_words_say(written: str, read: str) -> None:
    assert normalise(written) == read


@pytest.mark.parametrize(
    "prompt",
    [
        "a scene full of gore",
        "A Scene Full Of GORE",
        "ＧＯＲＥ everywhere",
        "gòre",
        "(((gore)))",
        "[[gore]] and flowers",
        "(gore:1.3), masterpiece",
        "g.o.r.e",
        "g-o-r-e",
        "g o r e",
        "g'o'r'e",
        "a blood bath",
        "a bloodbath",
        "(blood bath:1.2)",
        "blood.bath",
        "充满暴力的画面",
        "充 满 暴 力",
    ],
)
def test_banned_terms_are_found_however_they_are_written(prompt: str) -> None:
    verdict = judge(prompt, BANNED, age_restricted=True)
    assert not verdict.allowed and verdict.rule == "banned", prompt


@pytest.mark.parametrize(
    "prompt",
    [
        "a gorge in the mountains",  # a longer word holding the term
        "a gored bull, a gorey old house",
        "a bath full of blood oranges",
        "a red fox in snow",
        "",
    ],
)
def test_words_that_only_contain_a_term_are_not_refused(prompt: str) -> None:
    assert judge(prompt, BANNED, age_restricted=False).allowed, prompt


def test_only_the_words_of_the_prompt_decide_not_a_substring_across_words() -> None:
    policy = Policy(banned_terms=("sex",))
    assert judge("Essex countryside", policy, age_restricted=False).allowed
    assert judge("sussex, sextant", policy, age_restricted=False).allowed
    assert not judge("s e x", policy, age_restricted=False).allowed


def test_adult_terms_are_allowed_only_in_age_restricted_channels() -> None:
    policy = Policy()
    outside = judge("a nude figure study", policy, age_restricted=False)
    inside = judge("a nude figure study", policy, age_restricted=True)
    assert (outside.allowed, outside.nsfw, outside.rule, outside.term) == (False, True, "nsfw", "nude")
    assert (inside.allowed, inside.nsfw, inside.rule) == (True, True, None)
    assert judge("(((N.S.F.W)))", policy, age_restricted=False).rule == "nsfw"
    assert judge("ｎｓｆｗ", policy, age_restricted=False).rule == "nsfw"


def test_a_server_may_refuse_adult_prompts_everywhere() -> None:
    policy = Policy(nsfw_action="refuse")
    assert not judge("a nude figure study", policy, age_restricted=True).allowed


def test_minors_with_adult_content_are_refused_whatever_the_server_chose() -> None:
    for age_restricted in (False, True):
        verdict = judge("nsfw, (schoolgirl:1.2)", Policy(), age_restricted=age_restricted)
        assert (verdict.allowed, verdict.rule) == (False, "minors")
    assert judge("a child flying a kite", Policy(), age_restricted=False).allowed


def test_a_banned_term_wins_over_everything_else() -> None:
    policy = Policy(banned_terms=("nude",))
    verdict = judge("a nude figure study", policy, age_restricted=True)
    assert (verdict.allowed, verdict.rule) == (False, "banned")


def test_a_server_can_empty_the_adult_terms() -> None:
    assert judge("nsfw", Policy(nsfw_terms=()), age_restricted=False).allowed


def test_first_match_names_the_term_as_the_server_wrote_it() -> None:
    assert first_match("(((BLOOD-BATH)))", ["Blood Bath"]) == "Blood Bath"
    assert first_match("a fox", ["   ", "!!!"]) is None  # terms that are only spaces or punctuation


def test_terms_typed_by_an_admin_are_split_trimmed_and_deduplicated() -> None:
    assert term_list("gore, Blood Bath ，暴力、 x;y\nz") == ["gore", "Blood Bath", "暴力", "x", "y", "z"]
    assert clean_terms(["Gore", "gore", "GÖRE", " ", "blood  bath"]) == ("Gore", "blood bath")
    assert len(clean_terms([f"term{i}" for i in range(MAX_TERMS + 50)])) == MAX_TERMS
    assert len(clean_terms(["x" * 500])[0]) == MAX_TERM_CHARS


def test_terms_are_added_and_removed_as_the_rules_read_them() -> None:
    terms = with_terms(("gore",), added=["Blood Bath", "GORE"])
    assert terms == ("gore", "Blood Bath")
    assert with_terms(terms, removed=["blood-bath", "nothing"]) == ("gore",)
    assert "nsfw" in DEFAULT_NSFW_TERMS


def test_a_channel_shows_flagged_images_only_where_it_may() -> None:
    flags = [False, True, False, True]
    everywhere = showing(flags, age_restricted=True, action="withhold")
    assert (everywhere.shown, everywhere.withheld, everywhere.spoiler) == ((0, 1, 2, 3), (), False)
    withheld = showing(flags, age_restricted=False, action="withhold")
    assert (withheld.shown, withheld.withheld, withheld.spoiler) == ((0, 2), (1, 3), False)
    covered = showing(flags, age_restricted=False, action="spoiler")
    assert (covered.shown, covered.withheld, covered.spoiler) == ((0, 1, 2, 3), (), True)
    clean = showing([False, False], age_restricted=False, action="spoiler")
    assert (clean.shown, clean.spoiler) == ((0, 1), False)
    assert showing([True], age_restricted=False, action="withhold").shown == ()
