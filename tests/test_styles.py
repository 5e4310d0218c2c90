"""WebUI prompt styles (pipeline.domain.prompt.styles): reading styles.csv and applying styles."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipeline.domain.prompt.styles import (
    MAX_APPLIED_CHARS,
    Style,
    StyleBook,
    StyleFile,
    StyleFileError,
)
from pipeline.errors import InvalidRequest

WEBUI_FILE = (
    "name,prompt,negative_prompt,description\r\n"
    "None,,,\r\n"
    'Cinematic,"cinematic still of {prompt}, shallow depth of field, ""film look""",'
    '"cartoon, drawing",A moody look\r\n'
    'Watercolor,"watercolor, soft edges",,\r\n'
    ',"no name, skipped",,\r\n'
    '"Multi\r\nLine","line one\r\nline two",ugly,\r\n'
)


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def touch_later(path: Path) -> None:
    """Make a rewrite visible even on a file system with coarse mtimes."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def book(tmp_path: Path) -> StyleBook:
    return StyleBook.read(write(tmp_path / "styles.csv", WEBUI_FILE, bom=True))


# -- reading -----------------------------------------------------------------------------------------


def test_reads_a_webui_file(book: StyleBook) -> None:
    assert book.names() == ("Cinematic", "Watercolor", "Multi Line")
    assert list(book) == [
        Style(
            "Cinematic",
            'cinematic still of {prompt}, shallow depth of field, "film look"',
            "cartoon, drawing",
        ),
        Style("Watercolor", "watercolor, soft edges", ""),
        Style("Multi Line", "line one\nline two", "ugly"),
    ]
    assert "none" not in book
    assert len(book) == 3


def test_missing_negative_column_and_short_rows_are_empty() -> None:
    book = StyleBook.from_csv(" Name , PROMPT \nA,a prompt\nB\n")
    assert list(book) == [Style("A", "a prompt", ""), Style("B", "", "")]


def test_names_match_without_case_and_first_row_wins(caplog: pytest.LogCaptureFixture) -> None:
    text = "name,prompt\nFilm Noir,first\nfilm  NOIR,second\nCafe\u0301,accent\n"
    with caplog.at_level(logging.WARNING):
        book = StyleBook.from_csv(text)
    assert book.names() == ("Film Noir", "Café")
    assert book.get("FILM noir").prompt == "first"
    assert book.get("  film   noir ").name == "Film Noir"
    assert book.get("CAFÉ").prompt == "accent"  # precomposed é matches e + combining accent
    assert "duplicate" in caplog.text and "film NOIR" in caplog.text


def test_a_row_with_a_refused_character_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        book = StyleBook.from_csv("name,prompt\nBad,nul\x00here\nGood,fine\n")
    assert book.names() == ("Good",)
    assert "line 2" in caplog.text and "U+0000" in caplog.text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("title,prompt\nA,b\n", "no name column"),
        ('name,prompt\nA,"b"c\n', "line 2"),
        ('name,prompt\nA,"unterminated\nB,c\n', "unexpected end of data"),
    ],
)
def test_malformed_files_are_refused(text: str, reason: str) -> None:
    with pytest.raises(StyleFileError, match=reason):
        StyleBook.from_csv(text)


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_bytes(b"name,prompt\nA,caf\xe9\n")
    with pytest.raises(StyleFileError, match="not UTF-8"):
        StyleBook.read(path)


def test_an_empty_file_is_an_empty_book() -> None:
    assert len(StyleBook.from_csv("")) == 0
    assert StyleBook.from_csv("\ufeffname,prompt,negative_prompt\r\n") == StyleBook.empty()


def test_size_cap_reads_whole_rows_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    header = "name,prompt\n"
    rows = [f'S{index},"a, {"x" * 40}\nsecond line"\n' for index in range(100)]
    path = write(tmp_path / "styles.csv", header + "".join(rows))
    cap = len(header) + len(rows[0]) * 10 + 55  # ten rows, then a cut after a line break in quotes
    with caplog.at_level(logging.WARNING):
        book = StyleBook.read(path, max_bytes=cap)
    assert book.names() == tuple(f"S{index}" for index in range(10))
    assert book.get("S9").prompt == f"a, {'x' * 40}\nsecond line"
    assert "larger than" in caplog.text


def test_style_count_cap(caplog: pytest.LogCaptureFixture) -> None:
    text = "name,prompt\n" + "".join(f"S{index},p\n" for index in range(20))
    with caplog.at_level(logging.WARNING):
        book = StyleBook.from_csv(text, max_styles=5)
    assert book.names() == ("S0", "S1", "S2", "S3", "S4")
    assert "more than 5 styles" in caplog.text


# -- applying ----------------------------------------------------------------------------------------


def test_placeholder_is_replaced_in_both_prompts() -> None:
    style = Style("s", "photo of {prompt}, 35mm", "{prompt}, blurry")
    assert style.apply(" a fox ", "text") == ("photo of a fox, 35mm", "text, blurry")


def test_without_placeholder_the_style_is_appended_leaving_out_empty_sides() -> None:
    style = Style("s", "masterpiece", "lowres")
    assert style.apply("a fox", "") == ("a fox, masterpiece", "lowres")
    assert Style("t", "", "").apply("a fox", "ugly") == ("a fox", "ugly")
    assert style.apply("", "") == ("masterpiece", "lowres")


def test_styles_apply_in_the_order_given(book: StyleBook) -> None:
    prompt, negative, applied = book.apply("a fox", "people", ["watercolor", "CINEMATIC"])
    assert prompt == 'cinematic still of a fox, watercolor, soft edges, shallow depth of field, "film look"'
    assert negative == "people, cartoon, drawing"
    assert applied == ("Watercolor", "Cinematic")

    prompt, negative, applied = book.apply("a fox", "people", ["cinematic", "watercolor", "Cinematic"])
    assert prompt == 'cinematic still of a fox, shallow depth of field, "film look", watercolor, soft edges'
    assert applied == ("Cinematic", "Watercolor")


def test_no_styles_change_nothing(book: StyleBook) -> None:
    assert book.apply("a fox", "ugly", []) == ("a fox", "ugly", ())


def test_unknown_style_names_the_flag_and_the_styles(book: StyleBook) -> None:
    with pytest.raises(InvalidRequest) as caught:
        book.apply("a fox", "", ["watercolor", "vaporwave"])
    error = caught.value
    assert error.field == "--style"
    assert error.value == "vaporwave"
    assert error.key == "unknown_style"
    assert "Cinematic, Watercolor, Multi Line" in str(error)


def test_long_lists_of_styles_are_shortened_in_the_error() -> None:
    book = StyleBook(Style(f"style number {index}") for index in range(500))
    with pytest.raises(InvalidRequest) as caught:
        book.get("nope")
    assert "and 494 more" in str(caught.value)
    assert len(str(caught.value)) < 500


def test_an_empty_book_says_no_styles_are_configured() -> None:
    with pytest.raises(InvalidRequest, match="no styles are configured") as caught:
        StyleBook.empty().get("anything")
    assert caught.value.field == "--style"
    assert caught.value.key == "no_styles"


def test_runaway_templates_are_refused_before_they_are_built() -> None:
    book = StyleBook([Style("a", "{prompt}" * 400), Style("b", "{prompt}" * 400)])
    with pytest.raises(InvalidRequest, match="too long") as caught:
        book.apply("a red fox", "", ["a", "b"])
    assert caught.value.field == "--style"
    assert caught.value.params == {"limit": MAX_APPLIED_CHARS}


def test_suggest_puts_prefix_matches_first(book: StyleBook) -> None:
    assert book.suggest("") == ("Cinematic", "Watercolor", "Multi Line")
    assert book.suggest("LINE") == ("Multi Line",)
    assert book.suggest("c") == ("Cinematic", "Watercolor")
    assert book.suggest("", limit=1) == ("Cinematic",)


# -- the file, watched ---------------------------------------------------------------------------------


def test_style_file_rereads_when_the_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", "name,prompt\nA,a\n")
    styles = StyleFile(path)
    first = styles.book()
    assert first.names() == ("A",)
    assert styles.book() is first  # unchanged: not read again
    write(path, "name,prompt\nA,a\nB,b\n")
    touch_later(path)
    assert styles.book().names() == ("A", "B")


def test_a_missing_file_is_empty_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "styles.csv"
    styles = StyleFile(path)
    with caplog.at_level(logging.INFO, logger="pipeline.domain.prompt.styles"):
        assert len(styles.book()) == 0
        assert len(styles.book()) == 0
    assert caplog.text.count("does not exist") == 1
    write(path, "name,prompt\nA,a\n")
    assert styles.book().names() == ("A",)
    path.unlink()
    assert len(styles.book()) == 0
    assert len(StyleFile(None).book()) == 0


def test_a_malformed_file_keeps_the_last_good_book(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "styles.csv", "name,prompt\nA,a\n")
    styles = StyleFile(path)
    good = styles.book()
    write(path, 'name,prompt\nA,"broken"quote\n')
    touch_later(path)
    with caplog.at_level(logging.WARNING):
        assert styles.book() is good
        assert styles.book() is good
    assert caplog.text.count("cannot be used") == 1
    assert "line 2" in caplog.text
    write(path, "name,prompt\nB,b\n")
    touch_later(path)
    assert styles.book().names() == ("B",)


def test_an_unreadable_file_keeps_the_last_good_book(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", "name,prompt\nA,a\n")
    styles = StyleFile(path)
    good = styles.book()
    path.unlink()
    path.mkdir()  # now it exists but cannot be read as a file
    assert styles.book() is good


def test_style_file_respects_the_size_cap(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", "name,prompt\n" + "".join(f"S{i},p\n" for i in range(100)))
    assert StyleFile(path, max_bytes=12 + 5 * 3).book().names() == ("S0", "S1", "S2")
    assert StyleFile(path, max_styles=2).book().names() == ("S0", "S1")
