"""`qa_rouge` and `rag_qa`: answer `{"question", "answer"}` JSONL and score ROUGE-L against the answers.

With a retriever configured (`rag_qa`), each question is answered twice, without and with the top-k
passages in the prompt. Per question (`<task>_items.jsonl`): both answers, their ROUGE-L, the
retrieved ids and how many of those passages the token budget let into the prompt
(`passages_in_prompt`; results.json has its mean over questions).
"""

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import summarize
from chipadapt.eval.rouge import RougeL
from chipadapt.eval.scoring import generate
from chipadapt.eval.task_base import TaskBase
from chipadapt.io.jsonl import FirstLines, jsonl_records
from chipadapt.retrieval.rag import PLAIN_TEMPLATE, rag_prompt

log = logging.getLogger(__name__)


# question_key: null reads the documented QA format, {"question", "answer"}, and a retrieval queries
# file, {"id", "query", "positive_ids", "answer"} (the shipped OpenROAD questions), without a setting.
QUESTION_KEYS = ("question", "query")


def read_qa(path: str | Path, question_key: str | None, answer_key: str) -> list[dict]:
    """{id, question, answer} rows; `question_key` None: the file's first record says which of
    QUESTION_KEYS it uses, and every record must use the same one."""
    path = Path(path)
    rows = []
    ids = FirstLines(path)
    for lineno, record in jsonl_records(path, missing=f"QA file {path} does not exist"):
        if question_key is None:
            question_key = next((k for k in QUESTION_KEYS if k in record), QUESTION_KEYS[0])
        question, answer = record.get(question_key), record.get(answer_key)
        if not isinstance(question, str) or not isinstance(answer, str):
            raise ChipadaptError(f"{path}:{lineno}: needs string fields {question_key!r} and {answer_key!r}")
        if not question.strip() or not answer.strip():  # an empty reference scores every answer 0
            raise ChipadaptError(f"{path}:{lineno}: {question_key!r} or {answer_key!r} is empty")
        rows.append({"id": ids.check(record.get("id", lineno), lineno), "question": question, "answer": answer})
    if not rows:
        raise ChipadaptError(f"{path}: no questions")
    return rows


class QATask(TaskBase):
    def __init__(
        self,
        name: str,
        path: str,
        question_key: str | None,
        answer_key: str,
        limit: int | None,
        max_new_tokens: int,
        batch_size: int,
        rouge: RougeL,
        answer_without_context: bool,
        retrieval: DictConfig | None = None,
    ):
        if not answer_without_context and not retrieval:
            raise ChipadaptError(
                f"eval.{name}: answer_without_context=false needs a retrieval section (nothing would be answered)"
            )
        self.name, self.path, self.keys = name, path, (question_key, answer_key)
        self.answer_without_context = answer_without_context
        self.limit, self.max_new_tokens, self.batch_size = limit, max_new_tokens, batch_size
        self.rouge = rouge
        self.items: list[dict] | None = None
        self.passages_cleaning: dict | None = None  # what the passage build redacted or left out (_retrieve)
        self.retrieval = (
            OmegaConf.to_container(retrieval, resolve=True) if isinstance(retrieval, DictConfig) else retrieval
        )
        # Read now: evaluate.py builds every task before loading the model, so a bad record stops the
        # run before any task generates.
        self.rows = read_qa(path, question_key, answer_key)[:limit]
        if not self.rows:
            raise ChipadaptError(f"eval.{name}: no questions left of {path} (limit={limit})")
        if self.retrieval:
            from chipadapt.retrieval.build import check_index_dir, retrieval_inputs

            r, prefix = self.retrieval, f"eval.{name}.retrieval"
            inputs = retrieval_inputs(prefix, r.get("passages"), r.get("build"), r.get("encoders"), r.get("bm25"))
            check_index_dir(r.get("index_dir"), f"{prefix}.index_dir", [*inputs, (f"eval.{name}.path", path)])

    def inputs(self) -> list[tuple[str, str]]:
        if not self.retrieval:
            return [("path", str(self.path))]
        from chipadapt.retrieval.build import retrieval_inputs

        r = self.retrieval
        found = retrieval_inputs("retrieval", r.get("passages"), r.get("build"), r.get("encoders"), r.get("bm25"))
        return [("path", str(self.path)), *found]

    def _retrieve(self, questions: list[str]) -> list[list]:
        from chipadapt.retrieval.build import chosen_retriever, load_passages_report, make_retrievers

        r = self.retrieval
        passages, cleaning = load_passages_report(r.get("passages"), r["build"], f"eval.{self.name}.retrieval.build")
        # What the build left out or redacted, recorded with the figures (results.json's passages_cleaning).
        self.passages_cleaning = cleaning.to_json() if cleaning else None
        retrievers = make_retrievers(r.get("encoders"), r["dense"], r.get("bm25"), r.get("hybrid"), r.get("index_dir"))
        retriever = chosen_retriever(retrievers, r["use"], f"eval.{self.name}.retrieval.use")
        retriever.index(passages)
        by_id = {p.id: p for p in passages}
        return [[by_id[pid] for pid, _ in row] for row in retriever.search(questions, r["top_k"])]

    def _bar_label(self) -> str:
        return self.label("rag_qa" if self.retrieval else "qa_rouge")

    def run(self, model, tokenizer) -> dict[str, float]:
        rows = self.rows
        questions = [r["question"] for r in rows]
        items = [{"id": r["id"], "question": r["question"], "reference": r["answer"], "scores": {}} for r in rows]
        if self.answer_without_context:
            plain = generate(
                model,
                tokenizer,
                [PLAIN_TEMPLATE.format(question=q) for q in questions],
                self.batch_size,
                self.max_new_tokens,
                chat=True,
                progress=self._bar_label(),
            )
            for item, answer in zip(items, plain):
                item["prediction"] = answer
                item["scores"]["rougeL"] = self.rouge.score(answer, item["reference"])
        if self.retrieval:
            retrieved = self._retrieve(questions)
            prompts, used = zip(
                *(
                    rag_prompt(q, hits, tokenizer, self.retrieval["budget_tokens"])
                    for q, hits in zip(questions, retrieved)
                )
            )
            with_rag = generate(
                model,
                tokenizer,
                list(prompts),
                self.batch_size,
                self.max_new_tokens,
                chat=True,
                progress=self._bar_label() + " (with retrieved passages)",
            )
            for item, answer, hits, ids in zip(items, with_rag, retrieved, used):
                item["prediction_rag"] = answer
                item["scores"]["rougeL_rag"] = self.rouge.score(answer, item["reference"])
                if self.answer_without_context:
                    item["scores"]["rag_gain"] = item["scores"]["rougeL_rag"] - item["scores"]["rougeL"]
                # The token budget decides how many of the top-k passages the model saw (the last one may
                # be cut at a line).
                item["scores"]["passages_in_prompt"] = len(ids)
                item.update({"retrieved_ids": [p.id for p in hits], "prompt_passage_ids": list(ids)})
        self.items = items
        cleaning = self.passages_cleaning
        return {
            **summarize(items),
            "questions": len(rows),
            "rougeL_scorer": self.rouge.describe(),
            **({"passages_cleaning": cleaning} if cleaning else {}),
        }
