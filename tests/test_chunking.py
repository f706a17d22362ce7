"""Chunking: paragraph numbers, sections, windows of long paragraphs, sentence spans."""

from __future__ import annotations

from indexer.chunking import ChunkingOptions, chunk_document, estimate_tokens
from indexer.models import Block, Document
from indexer.text import split_sentences


def _document(parts: list[tuple[str, str]]) -> Document:
    """A document whose source is the parts joined by blank lines."""
    source, blocks, at = "", [], 0
    for kind, text in parts:
        if source:
            source += "\n\n"
            at += 2
        source += text
        blocks.append(Block(kind, text, at, at + len(text)))  # type: ignore[arg-type]
        at += len(text)
    return Document("doc.txt", "Doc", source, blocks, "text")


def test_paragraphs_are_numbered_from_one_and_headings_give_sections() -> None:
    doc = _document(
        [
            ("paragraph", "Opening words."),
            ("heading", "I. First Part"),
            ("paragraph", "Inside the first part."),
            ("heading", "References"),
            ("paragraph", "Smith, J. 2020. A book."),
        ]
    )
    chunked = chunk_document(doc, ChunkingOptions())
    numbered = [(p.paragraph, p.section, p.text) for p in chunked.passages]
    assert numbered == [
        (1, None, "Opening words."),
        (2, "I. First Part", "Inside the first part."),
        (3, "References", "Smith, J. 2020. A book."),
    ]
    assert [b.number for b in chunked.blocks] == [1, None, 2, None, 3]


def test_long_paragraph_is_windowed_with_overlap_and_exact_spans() -> None:
    sentences = [f"Sentence {i} talks about topic {i} at some length here." for i in range(40)]
    doc = _document([("paragraph", "Short one."), ("paragraph", " ".join(sentences))])
    chunked = chunk_document(doc, ChunkingOptions(max_tokens=60, overlap=1))
    windows = [p for p in chunked.passages if p.paragraph == 2]
    assert len(windows) > 3
    assert [w.window for w in windows] == list(range(len(windows)))
    for passage in chunked.passages:
        assert doc.source[passage.char_start : passage.char_end] == passage.text
        assert max(estimate_tokens([passage.text])) <= 60 + 15
        for sentence in passage.sentences:
            assert passage.text[sentence.start : sentence.end] == sentence.text
            assert doc.source[sentence.char_start : sentence.char_end] == sentence.text
    for before, after in zip(windows, windows[1:], strict=False):
        assert before.sentences[-1].text == after.sentences[0].text  # one sentence of overlap
    covered = {s.text for w in windows for s in w.sentences}
    assert covered == set(sentences)


def test_windows_leave_room_for_the_title_embedded_before_them() -> None:
    sentences = [f"Sentence {i} talks about topic {i} at some length here." for i in range(40)]
    doc = _document([("paragraph", " ".join(sentences))])
    untitled = chunk_document(doc, ChunkingOptions(max_tokens=60, overlap=0)).passages
    doc.title = "A rather long title that takes up a good share of the model's tokens"
    titled = chunk_document(doc, ChunkingOptions(max_tokens=60, overlap=0)).passages
    title_tokens = estimate_tokens([doc.title])[0]
    assert len(titled) > len(untitled)
    for passage in titled:
        lengths = estimate_tokens([s.text for s in passage.sentences])
        assert title_tokens + 1 + sum(lengths) <= 60 or len(passage.sentences) == 1
    assert ChunkingOptions().to_dict()["title"] == "counted"  # older indexes are re-chunked


def test_stripped_markup_spans_map_back_to_the_source() -> None:
    source = "See [the report](http://x.org) now. It is *long*."
    text = "See the report now. It is long."
    offsets = []
    j = 0
    for ch in text:
        j = source.index(ch, j)
        offsets.append(j)
        j += 1
    doc = Document(
        "m.md", "M", source, [Block("paragraph", text, 0, len(source), tuple(offsets))], "markdown"
    )
    passage = chunk_document(doc, ChunkingOptions()).passages[0]
    assert passage.text == text
    second = passage.sentences[1]
    assert second.text == "It is long."
    assert source[second.char_start : second.char_end] == "It is *long*."


def test_fragments_without_words_join_a_neighbouring_sentence() -> None:
    text = "■ Hyeong Jung PARK is a fellow. He writes. ■"
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "■ Hyeong Jung PARK is a fellow.",
        "He writes. ■",
    ]


def test_sentence_splitter_keeps_abbreviations_inside() -> None:
    text = (
        "The U.S. stance changed under Dr. Kim, e.g. in talks. "
        "On July 23, 2024, North Korea issued a statement. It was short."
    )
    sentences = [text[a:b] for a, b in split_sentences(text)]
    assert sentences == [
        "The U.S. stance changed under Dr. Kim, e.g. in talks.",
        "On July 23, 2024, North Korea issued a statement.",
        "It was short.",
    ]


def test_a_quoted_abbreviation_before_a_capitalised_word_ends_the_sentence() -> None:
    # from the plain seed: the splitter glued these two sentences together
    text = (
        'They offer insight into the "strategy of toughest response to the U.S." During '
        "this period, 54 documents were closely examined. Others said “Go.” Then left."
    )
    sentences = [text[a:b] for a, b in split_sentences(text)]
    assert sentences == [
        'They offer insight into the "strategy of toughest response to the U.S."',
        "During this period, 54 documents were closely examined.",
        "Others said “Go.”",
        "Then left.",
    ]
    # a quoted abbreviation inside a sentence stays inside
    inside = 'The "U.S." army and the “U.K.” navy met.'
    assert [inside[a:b] for a, b in split_sentences(inside)] == [inside]


def _author(parts: list[tuple[str, str]], title: str = "Doc") -> object:
    document = _document(parts)
    document.title = title
    chunk_document(document, ChunkingOptions(max_tokens=200, overlap=1), estimate_tokens)
    return document.metadata.get("author")


def test_an_author_note_near_the_end_names_the_author() -> None:
    parts = [
        ("paragraph", "The lantern room was repaired in 2019."),
        ("paragraph", "The repair cost 41,000 euros."),
        ("paragraph", "Jane Morel is a historian of the Breton coast."),
    ]
    assert _author(parts) == "Jane Morel"


def test_a_sentence_introducing_the_subject_is_no_author_note() -> None:
    title = "Saint-Mathieu Lighthouse"
    opening = ("paragraph", "Saint-Mathieu Lighthouse is a lighthouse in Brittany.")
    repair = ("paragraph", "The lantern room was repaired in 2019.")
    # the title repeated as the subject of the opening sentence (an HTML page's <h1>)
    assert _author([("heading", title), opening, repair], title) is None
    # nor the opening paragraph, whatever the title, nor a heading's name near the end
    assert _author([opening, repair], "Lighthouses of France") is None
    bay = ("paragraph", "Crozon Bay is a bay south of the lighthouse.")
    assert _author([repair, ("heading", "Crozon Bay"), repair, bay], "Lighthouses") is None
