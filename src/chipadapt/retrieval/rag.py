"""Retrieval-augmented prompts: the top passages, within a token budget, ahead of the question."""

from chipadapt.retrieval.passages import Passage

RAG_TEMPLATE = (
    "Answer the question using the documentation excerpts below. Be brief.\n\n{context}\n\nQuestion: {question}"
)
PLAIN_TEMPLATE = "Answer the question about chip design tools. Be brief.\n\nQuestion: {question}"


def rag_prompt(question: str, passages: list[Passage], tokenizer, budget_tokens: int) -> tuple[str, list[str]]:
    """The prompt and the ids of the passages that fit in `budget_tokens` (in rank order; the last
    one is cut at a line when it does not fit whole)."""
    blocks, used, ids = [], 0, []
    for rank, passage in enumerate(passages, start=1):
        block = f"[{rank}] ({passage.source or passage.id})\n{passage.text}"
        n = len(tokenizer(block, add_special_tokens=False).input_ids)
        if used + n > budget_tokens:
            lines, kept = block.splitlines(), []
            for line in lines:
                cost = len(tokenizer("\n".join([*kept, line]), add_special_tokens=False).input_ids)
                if used + cost > budget_tokens:
                    break
                kept.append(line)
            if len(kept) > 1:
                blocks.append("\n".join(kept))
                ids.append(passage.id)
            break
        blocks.append(block)
        ids.append(passage.id)
        used += n
    if not blocks:
        return PLAIN_TEMPLATE.format(question=question), []
    return RAG_TEMPLATE.format(context="\n\n".join(blocks), question=question), ids
