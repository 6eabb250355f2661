"""RAG: prompts that keep to their token budget, and QA answered with and without retrieved passages."""

import pytest
from conftest import write_jsonl
from helpers.models import tiny_llama
from test_retrieval import BM25, DENSE, PASSAGES, minilm_folder

from chipadapt.retrieval.passages import Passage


def test_rag_prompt_keeps_to_the_token_budget(smollm2_folder=None):
    from transformers import AutoTokenizer

    from chipadapt.retrieval.rag import rag_prompt

    tok = AutoTokenizer.from_pretrained(minilm_folder())
    long = [
        Passage(f"l{i}", "\n".join(f"line {j} of passage {i} about routing" for j in range(20)), "src")
        for i in range(5)
    ]
    prompt, ids = rag_prompt("How is routing done?", long, tok, budget_tokens=300)
    assert ids and ids[0] == "l0" and len(ids) < 5
    assert prompt.endswith("Question: How is routing done?")
    context = prompt.split("\n\n", 1)[1].rsplit("\n\nQuestion:", 1)[0]
    assert len(tok(context, add_special_tokens=False).input_ids) <= 300 + 10
    plain, none = rag_prompt("q?", [], tok, 300)
    assert none == [] and "documentation excerpts" not in plain


def test_rag_qa_answers_with_and_without_retrieval_and_saves_the_retrieved_ids(tmp_path):
    from omegaconf import OmegaConf

    from chipadapt.eval.rouge import RougeL
    from chipadapt.eval.tasks.qa import QATask
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    rouge = RougeL(use_stemmer=True)
    folder = tiny_llama(tmp_path, num_layers=1, max_position_embeddings=1024)
    passages = write_jsonl(tmp_path / "p.jsonl", [{"id": p.id, "text": p.text} for p in PASSAGES])
    qa = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "What inserts clock buffers?", "answer": "clock tree synthesis"},
            {"question": "What builds the power grid?", "answer": "pdngen"},
        ],
    )
    retrieval = OmegaConf.create(
        {
            "passages": str(passages),
            "build": None,
            "use": "bm25",
            "top_k": 2,
            "budget_tokens": 200,
            "encoders": {},
            "dense": DENSE,
            "bm25": BM25,
            "hybrid": None,
        }
    )
    task = QATask("rag_qa", str(qa), "question", "answer", None, 4, 2, rouge, True, retrieval)
    results = task.run(load_causal_lm(folder, "float32", "sdpa").eval(), load_tokenizer(folder))
    assert results["questions"] == 2 and 0 <= results["rougeL"] <= 1 and 0 <= results["rougeL_rag"] <= 1
    assert results["rag_gain"] == pytest.approx(results["rougeL_rag"] - results["rougeL"])
    assert results["rougeL_scorer"] == rouge.describe() and results["rougeL_n"] == 2
    records = task.items
    assert records[0]["retrieved_ids"][0] == "p1" and records[1]["retrieved_ids"][0] == "p2"
    assert {"prediction", "prediction_rag", "reference", "scores"} <= set(records[0])
    # How many of the top-k passages the 200-token budget let into each prompt, per question and on average.
    held = [r["scores"]["passages_in_prompt"] for r in records]
    assert all(0 <= h <= 2 for h in held) and held == [len(r["prompt_passage_ids"]) for r in records]
    assert results["passages_in_prompt"] == pytest.approx(sum(held) / 2)
    # RAG answers only (sweeps that score domain QA with retrieval): no answer without passages is generated.
    model, tokenizer = load_causal_lm(folder, "float32", "sdpa").eval(), load_tokenizer(folder)
    rag_only_task = QATask("rag_qa", str(qa), "question", "answer", None, 4, 2, rouge, False, retrieval)
    rag_only = rag_only_task.run(model, tokenizer)
    assert "rougeL_rag" in rag_only and "rougeL" not in rag_only and "rag_gain" not in rag_only
    assert "prediction" not in rag_only_task.items[0]
    from chipadapt.errors import ChipadaptError

    with pytest.raises(ChipadaptError, match="answer_without_context=false needs a retrieval section"):
        QATask("qa_rouge", str(qa), "question", "answer", None, 4, 2, rouge, False, None)
