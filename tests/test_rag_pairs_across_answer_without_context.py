"""The reproduction evaluates the merges' domain QA with RAG answers only (answer_without_context=false)
and the base and SFT models with both: the report said "not paired: rag_qa ... answer_without_context
True vs False" for ChipAlign against the chip and instruct models. The setting only adds the no-passage
answers, in a generation of their own (eval/tasks/qa.py): rougeL_rag is scored the same either way."""

from chipadapt.eval.same_items import same_settings, settings_differ

WITH = {"max_new_tokens": 8, "answer_without_context": True, "retrieval": {"top_k": 3}}
WITHOUT = {**WITH, "answer_without_context": False}


def test_answer_without_context_does_not_stop_a_pairing():
    assert settings_differ(WITH, WITHOUT) == []
    assert same_settings("rag_qa", "chipalign 0.5", "chip model", WITHOUT, WITH) == []


def test_a_setting_that_changes_the_rag_answers_still_does():
    assert [key for key, *_ in settings_differ(WITH, {**WITHOUT, "max_new_tokens": 16})] == ["max_new_tokens"]
