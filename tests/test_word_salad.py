"""A docs folder holding "word salad" (thousands of words from a word list on one line, no sentences): before,
curation's prose rule read the line as a paragraph, so the passage build warned that the file gave most
passages yet indexed it. It is machine-like now; real prose, Markdown tables, Tcl and Verilog still pass, and
a run folder's passages built before the rule are built again."""

import json
import logging
import random

import pytest
from conftest import SHARED_DATA
from omegaconf import OmegaConf

import chipadapt.retrieval.built_inputs as built_inputs
import chipadapt.stages.retriever as stage
from chipadapt.curation.filters import is_prose
from chipadapt.io.built_from import write_built
from chipadapt.retrieval.build import load_passages_report
from chipadapt.retrieval.passage_cleaning import machine_like_reason
from chipadapt.retrieval.passages import read_passages

WORDS = (
    "buffer cell strap clock inverter macro skew via pin net slack placement routing congestion legalizer "
    "detailed global track layer metal power ground ring stripe filler tap endcap antenna diode hold setup"
).split()
CORPUS = SHARED_DATA / "corpus"
needs_data = pytest.mark.skipif(not (CORPUS / "openroad.jsonl").is_file(), reason="../shared/data absent")


def salad(n: int, words: list[str] = WORDS, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(words) for _ in range(n))


def build(folder) -> dict:
    """conf/passages/folder.yaml's settings."""
    return {
        "sources": {"docs": {"path": str(folder)}},
        "max_chars": 512,
        "min_chars": 64,
        "overlap_chars": 0,
        "context": False,
        "redact": True,
        "drop_duplicates": True,
        "keep_machine_like": False,
        "undecodable_share": 0.05,
    }


def test_one_long_line_of_words_without_sentences_is_machine_like():
    assert machine_like_reason("salad.txt", salad(5000)) == "long_lines"
    assert machine_like_reason("notes.md", f"# Notes\n\n{salad(5000)}\n") == "long_lines"
    assert not is_prose(salad(400))
    # The same words as sentences are a paragraph, however long the line.
    sentences = ". ".join(salad(12, seed=s).capitalize() for s in range(400)) + "."
    assert is_prose(sentences) and machine_like_reason("notes.txt", sentences) is None


def test_long_prose_lines_people_write_are_still_prose():
    # One long sentence strung with commas and semicolons (a legal passage), a bug report, CJK sentences.
    legal = (
        "If any person shall, from and after the passing of this act, by force and violence, take and carry away, "
        "or cause to be taken or carried away, any free person of color from any part of this state; "
    ) * 6
    assert is_prose(legal)
    bug = (
        "Bug 4411: after a warm reset the DMA descriptor ring pointer is not cleared, so the first transfer "
        "after reset reuses a stale descriptor and the engine hangs waiting for a completion that never comes. "
    ) * 10
    assert is_prose(bug)
    table_row = "| " + " | ".join(" ".join(WORDS[i : i + 6]) for i in range(0, 30, 3)) + " |"
    assert len(table_row) > 200 and is_prose((table_row + " ") * 4)


@pytest.mark.parametrize(
    "sentence",
    [
        "{}.[{}]",  # a Wikipedia citation after the full stop
        "<p>{}.</p>",  # a scraped HTML page on one line
        "**{}.**",  # Markdown bold, italics, code
        "_{}._",
        "`{}.`",
    ],
)
def test_sentences_that_end_before_a_citation_or_markup_are_prose(sentence):
    # 480 words, a full stop every 12 of them, none followed by a space: each stop is a sentence break.
    line = " ".join(sentence.format(salad(12, seed=s).capitalize(), s) for s in range(40))
    assert is_prose(line) and machine_like_reason("article.txt", line) is None


def test_a_dot_inside_a_number_or_a_file_name_is_no_sentence_break():
    tokens = salad(400).split()
    tokens[::10] = [f"top_{i}.v 3.14" for i in range(len(tokens[::10]))]
    assert not is_prose(" ".join(tokens))


def test_a_run_folders_passages_built_before_the_rule_are_built_again(tmp_path, monkeypatch):
    """The same settings build other passages now (the salad is left out): the builder's version in the
    passages record says so, and a rerun in the folder builds them again rather than indexing the salad."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text(". ".join(salad(12, seed=s).capitalize() for s in range(20)) + ".\n")
    (docs / "salad.txt").write_text(salad(2000))
    settings = build(docs)
    out = tmp_path / "run"
    out.mkdir()
    # What the code before the rule wrote: the salad's passages, recorded under the builder version then.
    with monkeypatch.context() as before:
        before.setattr(built_inputs, "PASSAGES_BUILDER", 3)
        old, _ = load_passages_report(None, {**settings, "keep_machine_like": True})
        assert "docs:salad.txt" in {p.source for p in old}
        write_built(
            out / "passages.jsonl", "".join(p.to_json() + "\n" for p in old), built_inputs.passages_inputs(settings)
        )
    cfg = OmegaConf.create({"overwrite": False, "passages": settings, "retriever": {"passages": None}})
    passages, _ = stage.stage_passages(cfg, out, None)
    assert {p.source for p in passages} == {"docs:notes.md"}
    assert read_passages(out / "passages.jsonl") == passages


# Hindi words in sentences ending in the script's own full stops: before the rule counted them (builder 4), such
# a paragraph on one line was read as a word list and skipped.
HINDI = [
    w.strip("।॥?")
    for w in "भारत एक विशाल देश है और इसकी संस्कृति बहुत पुरानी है। यहाँ अनेक भाषाएँ बोली जाती हैं और हर राज्य की "
    "अपनी परंपराएँ हैं। क्या आपने कभी गंगा नदी के किनारे सूर्योदय देखा है? प्राचीन ग्रंथों में इस नदी का वर्णन "
    "बार बार मिलता है॥".split()
]


def hindi_paragraph(words: int, seed: int = 0) -> str:
    rng, sentences, count = random.Random(seed), [], 0
    while count < words:
        n = rng.randint(8, 14)
        sentences.append(" ".join(rng.choice(HINDI) for _ in range(n)) + rng.choice("।।?॥"))
        count += n
    return " ".join(sentences)


def test_a_run_folders_passages_built_before_other_scripts_were_prose_are_built_again(tmp_path, monkeypatch):
    """A folder built under builder 4 left the Hindi paragraph out; the same settings keep it now, so a rerun
    builds the passages again rather than reusing ones without it (as a fresh folder would not)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text(". ".join(salad(12, seed=s).capitalize() for s in range(20)) + ".\n")
    line = hindi_paragraph(300)
    assert len(line.split()) >= 300 and is_prose(line)
    (docs / "hindi.md").write_text(f"# नोट्स\n\n{line}\n")
    settings = build(docs)
    out = tmp_path / "run"
    out.mkdir()
    fresh, _ = load_passages_report(None, settings)
    assert "docs:hindi.md" in {p.source for p in fresh}
    # What the code under builder 4 wrote: the same passages less the Hindi paragraph's.
    with monkeypatch.context() as before:
        before.setattr(built_inputs, "PASSAGES_BUILDER", 4)
        old = [p for p in fresh if p.source != "docs:hindi.md"]
        write_built(
            out / "passages.jsonl", "".join(p.to_json() + "\n" for p in old), built_inputs.passages_inputs(settings)
        )
    cfg = OmegaConf.create({"overwrite": False, "passages": settings, "retriever": {"passages": None}})
    passages, _ = stage.stage_passages(cfg, out, None)
    assert {p.source for p in passages} == {"docs:notes.md", "docs:hindi.md"}
    assert read_passages(out / "passages.jsonl") == passages


def _records(name: str, lang: str, count: int) -> list[dict]:
    out = []
    with open(CORPUS / name) as f:
        for line in f:
            record = json.loads(line)
            if record["lang"] == lang:
                out.append(record)
                if len(out) == count:
                    break
    return out


@needs_data
def test_a_docs_folder_skips_the_salad_and_keeps_real_prose_tables_tcl_and_verilog(tmp_path, caplog):
    docs = tmp_path / "docs"
    docs.mkdir()
    with open(SHARED_DATA / "general" / "wiki_demo_docs.jsonl") as f:
        article = json.loads(f.readline())["text"]  # a whole Wikipedia article, paragraphs on long lines
    (docs / "article.txt").write_text(article)
    guide = next(r for r in _records("openroad.jsonl", "markdown", 100) if r["path"].endswith("DeveloperGuide.md"))
    assert "|---" in guide["text"].replace(" ", "")  # a Markdown table with 300-character rows
    (docs / "DeveloperGuide.md").write_text(guide["text"])
    for i, record in enumerate(_records("orfs.jsonl", "tcl", 5)):
        (docs / f"flow_{i}.tcl").write_text(record["text"])
    for i, record in enumerate(_records("picorv32.jsonl", "verilog", 2)):
        (docs / f"rtl_{i}.v").write_text(record["text"])
    # Word salad of the article's own words: a word list written out, 5,000 words on one line.
    vocabulary = sorted({w.strip(".,;:()\"'") for w in article.split()} - {""})
    (docs / "salad.txt").write_text(salad(5000, vocabulary))
    with caplog.at_level(logging.WARNING):
        passages, report = load_passages_report(None, build(docs))
    assert report.machine_like == {"docs:salad.txt": "long_lines"}
    assert "docs:salad.txt: long_lines" in caplog.text  # named in the summary of skipped files
    sources = {p.source for p in passages}
    kept = {f"docs:{p.name}" for p in docs.iterdir()} - {"docs:salad.txt"}
    assert sources == kept
