"""The questions a retriever missed, written for a person: question, gold passage, what came first instead."""

from pathlib import Path

from chipadapt.io.atomic import write_text_atomic
from chipadapt.io.outputs import first_line

SHOWN_CHARS = 300  # of each passage: enough to see what it is about
HEADER = "# Retrieval misses:"  # the first line, by which a rerun knows the file as its own


def is_misses_file(path: Path) -> bool:
    return first_line(path).startswith(HEADER)


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[:SHOWN_CHARS] + " ..."


def misses_markdown(items: list[dict], retrievers: list[str], passages: dict, k: int, top: int = 3) -> str:
    """Per retriever, each item whose gold passages are all outside its top k (items as eval=retrieval
    writes them: id, query, reference = gold ids, prediction = {retriever: ranked ids}, type?)."""
    lines = [f"{HEADER} no gold passage in the top {k}", ""]
    for name in retrievers:
        missed = [i for i in items if not set(i["reference"]) & set(i["prediction"][name][:k])]
        lines += [f"## {name}: {len(missed)} of {len(items)} questions missed", ""]
        for item in missed:
            kind = f" ({item['type']})" if item.get("type") else ""
            lines += [f"### {item['id']}{kind}: {item['query']}", ""]
            for pid in item["reference"]:
                lines.append(f"- gold `{pid}`: {_excerpt(passages[pid].text)}")
            for rank, pid in enumerate(item["prediction"][name][:top], start=1):
                lines.append(f"- retrieved #{rank} `{pid}`: {_excerpt(passages[pid].text)}")
            lines.append("")
    return "\n".join(lines)


def write_misses(path: str | Path, items: list[dict], retrievers: list[str], passages: dict, k: int) -> Path:
    return write_text_atomic(Path(path), misses_markdown(items, retrievers, passages, k))
