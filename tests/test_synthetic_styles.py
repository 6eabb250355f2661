"""Query styles for synthetic retriever data: structure parsing (headings, commands, option and
variable tables, messages), the template styles, style shares, and the lookup false-negative guard."""

import random

import pytest

from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passages import Passage

# One manual page cut into three passages: the option table continues in passages the synopsis is not in.
DOC = [
    """# Clock Tree Synthesis

## Commands

### Clock Tree Synthesis

```tcl
clock_tree_synthesis
    [-root_buf buf]
    [-sink_clustering_enable]
```""",
    """#### Options

| Switch Name | Description |
| ----- | ----- |
| `-root_buf` | The master cell of the buffer that serves as root for the clock tree. |
| `[-sink_clustering_enable]` | Enables pre-clustering of sinks to balance the tree. |""",
    """### Report CTS

```tcl
report_cts [-out_file file]
```

| `-out_file` | The file to save the report to. |

Typical log line: [WARNING CTS-0041] Net clk has no sinks, skipping clock tree.""",
]
VARIABLES = """## Placement variables

| Variable | Description |
| --- | --- |
| <a name="PLACE_DENSITY"></a>PLACE_DENSITY | The desired placement density of cells. |
| `GPL_TIMING_DRIVEN` | Enables timing-driven global placement. |"""


def passages() -> list[Passage]:
    doc = [Passage(f"cts#{i}", text, "cts") for i, text in enumerate(DOC)]
    return doc + [Passage("flow#0", VARIABLES, "flow")]


def test_structure_carries_headings_and_the_command_across_a_documents_passages():
    from chipadapt.retrieval.passage_structure import document_structures

    structures = document_structures(list(reversed(passages())))  # read in document order whatever the input order
    first, table, report = (structures[f"cts#{i}"] for i in range(3))
    assert first.commands == ["clock_tree_synthesis"]
    assert first.headings == ["Clock Tree Synthesis", "Commands", "Clock Tree Synthesis"]
    assert table.headings[-1] == "Options" and table.commands == ["clock_tree_synthesis"]
    assert [(o.name, o.command) for o in table.options] == [
        ("-root_buf", "clock_tree_synthesis"),
        ("-sink_clustering_enable", "clock_tree_synthesis"),
    ]
    assert table.options[1].description == "Enables pre-clustering of sinks to balance the tree."
    # A sibling section documents another command; its table rows are that command's.
    assert report.headings[-1] == "Report CTS" and [(o.name, o.command) for o in report.options] == [
        ("-out_file", "report_cts")
    ]
    assert [(m.level, m.code) for m in report.messages] == [("WARNING", "CTS-0041")]
    flow = structures["flow#0"]
    assert [v.name for v in flow.variables] == ["PLACE_DENSITY", "GPL_TIMING_DRIVEN"] and not flow.options


def test_template_styles_name_what_the_structure_holds():
    from chipadapt.retrieval.passage_structure import PassageStructure, TableEntry
    from chipadapt.retrieval.query_styles import document_frequencies, flag_query, howto_from_heading, keyword_query

    rng = random.Random(0)
    entry = TableEntry("-root_buf", "The master cell of the buffer at the root.", "clock_tree_synthesis")
    forms = {flag_query(entry, rng) for _ in range(40)}
    assert forms == {
        "clock_tree_synthesis -root_buf",
        "what does -root_buf do in clock_tree_synthesis?",
        "which clock_tree_synthesis option sets the master cell of the buffer at the root?",
    }
    variable = TableEntry("PLACE_DENSITY", "Enables dense placement.", None)
    assert "which flow variable enables dense placement?" in {flag_query(variable, rng) for _ in range(40)}
    assert howto_from_heading(PassageStructure(headings=["Tapcell", "Add Tapcell/Endcap"])) == (
        "How do I add tapcell/endcap?"
    )
    assert howto_from_heading(PassageStructure(headings=["Running Global Placement"])) == (
        "How do I run global placement?"
    )
    assert howto_from_heading(PassageStructure(headings=["Overview"])) is None
    texts = [p.text for p in passages()]
    df, n = document_frequencies(texts)
    query = keyword_query(texts[1], PassageStructure(commands=["clock_tree_synthesis"]), df, n, rng)
    assert query.startswith("clock_tree_synthesis ") and 3 <= len(query.split()) <= 5


def test_synthesis_records_styles_splits_by_share_and_keeps_same_flag_passages_out_of_negatives():
    from chipadapt.retrieval.retrievers import BM25Retriever
    from chipadapt.retrieval.synthetic import synthesize
    from chipadapt.retrieval.synthetic_queries import style_quotas

    assert style_quotas({"question": 2, "flag": 1, "keyword": 1}, 100) == {"question": 50, "flag": 25, "keyword": 25}
    with pytest.raises(ChipadaptError, match="'riddle' is not one of"):
        style_quotas({"riddle": 1.0}, 10)
    # A copy of the option table elsewhere (docs are often duplicated) answers the same lookup.
    twin = Passage("copy#0", "clock_tree_synthesis options: `-root_buf` sets the root buffer master.", "copy")
    filler = [Passage(f"f{i}", f"Unrelated notes number {i} about yosys synthesis scripts.", "f") for i in range(6)]
    corpus = passages() + [twin] + filler
    miner = BM25Retriever(k1=1.5, b=0.75, stemmer="english", stopwords="en", context=False)
    miner.index(corpus)
    shares = {"keyword": 1.0, "flag": 3.0, "error": 1.0}
    groups, report = synthesize(corpus, 10, "ict", miner, None, 8, 0, 0.0, 3, 0.9, 20, seed=0, styles=shares)
    # five table rows in the corpus: five drawn, not the six asked for
    assert report["styles"]["flag"] == {"requested": 6, "sampled": 5, "made": 5}
    assert report["requested"] == 10 and report["sampled"] == sum(s["sampled"] for s in report["styles"].values())
    assert report["styles"]["error"]["made"] == 1 and report["template"] == len(groups)
    assert {g.extra["style"] for g in groups} == {"keyword", "flag", "error"}
    assert all(g.to_tevatron()["style"] == g.extra["style"] for g in groups)
    root = [g for g in groups if g.extra["style"] == "flag" and "-root_buf" in g.query]
    assert root and all("copy#0" not in {n.id for n in g.negatives} for g in root)
    assert report["same_entry_skipped"] >= 1
