"""Bytes of one file -> text, with the maintained library for each document format.

HTML keeps code blocks (as fenced blocks) and drops scripts, styles and navigation, as ChipNeMo
cleaned its internal web pages.
"""

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from bs4 import BeautifulSoup


class ExtractError(Exception):
    """The file is corrupt or unreadable in its format."""


def html_text(raw: str) -> str:
    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer", "noscript"]):
        tag.decompose()
    for block in soup.find_all("pre"):
        block.replace_with(f"\n```\n{block.get_text()}\n```\n")
    for inline in soup.find_all("code"):
        inline.replace_with(f"`{inline.get_text()}`")
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    text, blank = [], False
    for line in lines:
        if line or not blank:
            text.append(line)
        blank = not line
    return "\n".join(text).strip() + "\n"


@contextmanager
def library_quiet(name: str) -> Iterator[None]:
    """No message from the library's logger `name` (its modules' loggers below it too) while the block
    runs. pypdf logs what it finds wrong with a damaged file ("EOF marker not found") without naming
    the file, in a worker where no log format is set: a bare line in every curation of a tree that
    holds the file. The file is counted and named under its skip reason (extract_error) instead."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    try:
        with library_quiet("pypdf"):
            reader = PdfReader(io.BytesIO(data))
            return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except Exception as err:  # pypdf raises many types on damaged files
        raise ExtractError(f"pdf: {type(err).__name__}") from None


def docx_text(data: bytes) -> str:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as err:
        raise ExtractError(f"docx: {type(err).__name__}") from None
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text for cell in row.cells))
    return "\n".join(parts)


def pptx_text(data: bytes) -> str:
    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
    except Exception as err:
        raise ExtractError(f"pptx: {type(err).__name__}") from None
    slides = []
    for number, slide in enumerate(deck.slides, start=1):
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame and shape.text_frame.text]
        slides.append(f"Slide {number}\n" + "\n".join(texts))
    return "\n\n".join(slides)


BINARY_EXTRACTORS = {"pdf": pdf_text, "docx": docx_text, "pptx": pptx_text}
