"""Two retrieval leftovers. Curation's prose rule counted only Latin and CJK sentence marks and read a word
with a combining mark (a Devanagari vowel sign) as no word, so a long Hindi, Arabic or Urdu paragraph on one
line was dropped as a word list. And a reranker given the files a retriever run read as one list held out
other groups without a query_id than that run: it numbered them per file, the retriever along the list."""

import json
import logging
import random

import pytest
import torch
from conftest import write_jsonl
from omegaconf import DictConfig, OmegaConf

import chipadapt.stages.reranker as reranker_stage
from chipadapt.curation.filters import is_prose
from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.passage_cleaning import machine_like_reason
from chipadapt.retrieval.reranker_datamodule import RerankerDataModule
from chipadapt.retrieval.tevatron_data import read_tevatron
from chipadapt.retrieval.training_data import split_groups
from chipadapt.stages.checkpoint_records import ORDER_KEY

# Each a sentence ending in its script's own full stop or question mark, none of them followed by a Latin one.
SENTENCES = {
    "hindi": [
        "भारत एक विशाल देश है और इसकी संस्कृति बहुत पुरानी है।",
        "यहाँ अनेक भाषाएँ बोली जाती हैं और हर राज्य की अपनी परंपराएँ हैं।",
        "क्या आपने कभी गंगा नदी के किनारे सूर्योदय देखा है?",
        "प्राचीन ग्रंथों में इस नदी का वर्णन बार बार मिलता है॥",
    ],
    "urdu": [
        "پاکستان ایک بڑا ملک ہے اور اس کی ثقافت بہت پرانی ہے۔",
        "یہاں کئی زبانیں بولی جاتی ہیں اور ہر صوبے کی اپنی روایات ہیں۔",
        "کیا آپ نے کبھی دریائے سندھ کے کنارے طلوع آفتاب دیکھا ہے؟",
    ],
    "arabic": [
        "هل تعرف أن هذه المدينة قديمة جدا وفيها أسواق كثيرة؟",
        "يزورها الناس من كل مكان لرؤية المساجد والبيوت القديمة؛",
        "وقد كُتِبَ عنها الكثير في كتب التاريخ والجغرافيا",
    ],
}


def paragraph(script: str, words: int) -> str:
    sentences, out = SENTENCES[script], []
    while sum(len(s.split()) for s in out) < words:
        out.append(sentences[len(out) % len(sentences)])
    return " ".join(out)


def word_list(script: str, words: int, seed: int = 0) -> str:
    """The paragraph's words strung on one line without its sentence marks: a word list, machine-like."""
    vocabulary = [w.strip("।॥?؟۔؛") for s in SENTENCES[script] for w in s.split()]
    rng = random.Random(seed)
    return " ".join(rng.choice(vocabulary) for _ in range(words))


@pytest.mark.parametrize("script", sorted(SENTENCES))
def test_a_long_paragraph_in_a_scripts_own_full_stops_is_prose_and_its_word_list_is_not(script):
    # Over 200 words a line (the most words per sentence break), under 2000 characters: a few sentences
    # repeated would be too, and compress like a table.
    line = paragraph(script, 250)
    assert len(line.split()) >= 250 and len(line) < 2000 and is_prose(line)
    assert machine_like_reason("notes.txt", f"# Notes\n\n{line}\n") is None
    salad = word_list(script, 250)
    assert not is_prose(salad) and machine_like_reason("salad.txt", salad) == "long_lines"


def test_a_word_with_combining_marks_is_a_word_but_marks_alone_are_not():
    # Hindi's vowel signs and virama, Arabic's harakat, and a decomposed Latin accent are combining marks.
    words = "हिन्दी भाषा में लिखा गया एक लंबा वाक्य कُتِبَ cafe\u0301 re\u0301sume\u0301"
    assert is_prose(words)
    assert not is_prose(" ".join(["\u093e\u093f", "\u0301\u0301"] * 6))


def _group(tag: str, i: int, every_id: bool = False) -> dict:
    group = {
        "query": f"Which option of {tag} step {i} sets the density?",
        "positive_passages": [{"docid": f"{tag}p{i}", "text": f"Step {i} of {tag} sets the density."}],
        "negative_passages": [{"docid": f"{tag}n{i}", "text": f"Step {i} of {tag} writes the DEF."}],
        "method": "llm",
    }
    # A given file: a third of them without an id; synthesis gives every group one.
    return group if i % 3 == 0 and not every_id else {**group, "query_id": f"{tag}{i}"}


def _queries(groups) -> set[str]:
    return {g["query"] for g in groups}


def test_a_list_of_files_holds_out_the_groups_a_retriever_reading_that_list_held_out(tmp_path):
    files = [write_jsonl(tmp_path / f"{tag}.jsonl", [_group(tag, i) for i in range(150)]) for tag in "ab"]
    # As stages/retriever.py reads retriever.train_file=[a,b]: one sequence of the files' groups, then split.
    retriever_train, retriever_val = split_groups([g for f in files for g in read_tevatron(f)], 0.2)
    data = RerankerDataModule([str(f) for f in files], 0.2, None, None, n_passages=2, batch_size=2, seed=0)
    val = data.val_sets["synthetic_heldout"].groups
    assert _queries(val) == _queries(retriever_val)
    assert _queries(data.train_set.groups) == _queries(retriever_train)
    # The groups without an id of the second file are the ones numbered on from the first file.
    assert any("query_id" not in g and g["query"].startswith("Which option of b") for g in val)


def _retriever_run(folder, tag: str, train_file=None):
    (folder / "synthetic").mkdir(parents=True)
    built = write_jsonl(folder / "synthetic" / "train.jsonl", [_group(tag, i, every_id=True) for i in range(150)])
    config = {
        "stage": {"name": "retriever"},
        "retriever": {"train_file": train_file, "eval_queries": None, "heldout_fraction": 0.2},
    }
    (folder / "manifest.json").write_text(json.dumps({"kind": "train", "config": config}))
    return built


def test_files_built_by_retriever_runs_each_hold_out_what_their_run_held_out(tmp_path):
    built = [_retriever_run(tmp_path / f"run_{tag}", tag) for tag in "ab"]
    # Each run split the file it built alone.
    retriever_val = [g for f in built for g in split_groups(read_tevatron(f), 0.2)[1]]
    data = RerankerDataModule([str(f) for f in built], None, None, None, n_passages=2, batch_size=2, seed=0)
    assert _queries(data.val_sets["synthetic_heldout"].groups) == _queries(retriever_val)


def test_the_message_for_a_run_that_read_a_list_names_the_list_without_a_caveat(tmp_path):
    given = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    built = _retriever_run(tmp_path / "run", "a", train_file=given)
    with pytest.raises(Exception, match=r"^reranker\.heldout_fraction: null holds out the groups") as told:
        RerankerDataModule(str(built), None, None, None, n_passages=2, batch_size=2, seed=0)
    message = str(told.value)
    assert f"to hold out the groups that run held out, reranker.train_file=[{','.join(given)}] with " in message
    assert "with a query_id" not in message


def test_a_list_of_a_built_file_and_a_given_one_holds_out_what_a_retriever_reading_it_held_out(tmp_path):
    built = _retriever_run(tmp_path / "run_a", "a")
    given = write_jsonl(tmp_path / "y.jsonl", [_group("y", i) for i in range(150)])
    # A retriever run reading retriever.train_file=[built, given]: the given file's groups without an id
    # numbered on after the built file's. Before, the built file's groups were not counted.
    retriever_train, retriever_val = split_groups([g for f in (built, given) for g in read_tevatron(f)], 0.2)
    data = RerankerDataModule([str(built), str(given)], 0.2, None, None, n_passages=2, batch_size=2, seed=0)
    assert _queries(data.val_sets["synthetic_heldout"].groups) == _queries(retriever_val)
    assert _queries(data.train_set.groups) == _queries(retriever_train)
    assert data.stats["heldout_numbering"] == "sequence"


def test_only_a_runs_synthetic_train_file_counts_as_built_by_it(tmp_path, caplog):
    _retriever_run(tmp_path / "run_a", "a")
    # Files of the user's own inside the run folder, two levels down: not the run's synthetic data.
    for name in ("extra/z.jsonl", "synthetic/other.jsonl"):
        (tmp_path / "run_a" / name).parent.mkdir(exist_ok=True)
        own = write_jsonl(tmp_path / "run_a" / name, [_group("z", i) for i in range(150)])
        with pytest.raises(ChipadaptError, match="is not a retriever run's synthetic data") as told:
            RerankerDataModule(str(own), None, None, None, n_passages=2, batch_size=2, seed=0)
        assert "not a RUN/synthetic/train.jsonl" in str(told.value)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            RerankerDataModule(str(own), 0.2, None, None, n_passages=2, batch_size=2, seed=0)
        assert "not a RUN/synthetic/train.jsonl" in caplog.text and "not checked against evaluation" in caplog.text
    # The run's own file, and a link to it, are.
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "run_a" / "synthetic" / "train.jsonl")
    for built in (tmp_path / "run_a" / "synthetic" / "train.jsonl", tmp_path / "link.jsonl"):
        data = RerankerDataModule(str(built), None, None, None, n_passages=2, batch_size=2, seed=0)
        assert data.stats["heldout_fraction"] == {str(built): 0.2}


def _per_file_split(files):
    """How chipadapt split a list of files before it numbered along the list: each file from 0."""
    return [s for f in files for s in [split_groups(read_tevatron(f), 0.2)]]


def test_per_file_numbering_holds_out_what_the_earlier_chipadapt_held_out_and_is_recorded(tmp_path):
    files = [write_jsonl(tmp_path / f"{tag}.jsonl", [_group(tag, i) for i in range(150)]) for tag in "zy"]
    old_val = [g for _, val in _per_file_split(files) for g in val]
    names = [str(f) for f in files]
    kept = RerankerDataModule(names, 0.2, None, None, 2, 2, 0, heldout_numbering="per_file")
    assert _queries(kept.val_sets["synthetic_heldout"].groups) == _queries(old_val)
    assert kept.stats["heldout_numbering"] == "per_file" and kept.state_dict() == {"heldout_numbering": "per_file"}
    along = RerankerDataModule(names, 0.2, None, None, 2, 2, 0)
    assert along.numbering_matters and along.state_dict() == {"heldout_numbering": "sequence"}
    # Numbered along the list, groups the earlier numbering held out are trained on: what a resume must not do.
    assert _queries(along.train_set.groups) & _queries(old_val)
    with pytest.raises(ChipadaptError, match=r"heldout_numbering=per_file, this run by sequence"):
        along.load_state_dict({"heldout_numbering": "per_file"})
    along.load_state_dict({"heldout_numbering": "sequence"})
    with pytest.raises(ChipadaptError, match=r"^heldout_numbering='by_line': one of sequence, per_file"):
        RerankerDataModule(names, 0.2, None, None, 2, 2, 0, heldout_numbering="by_line")


def _stage_cfg(files) -> DictConfig:
    return OmegaConf.create(
        {
            "stage": {
                "datamodule": {
                    "_target_": "chipadapt.retrieval.reranker_datamodule.RerankerDataModule",
                    "_partial_": True,
                    "train_file": [str(f) for f in files],
                    "heldout_fraction": 0.2,
                    "styles": None,
                    "n_passages": 2,
                    "batch_size": 2,
                    "seed": 0,
                    "eval_queries": None,
                }
            }
        }
    )


def test_a_resume_keeps_the_numbering_of_the_checkpoint_it_resumes(tmp_path, monkeypatch, caplog):
    files = [write_jsonl(tmp_path / f"{tag}.jsonl", [_group(tag, i) for i in range(150)]) for tag in "zy"]
    cfg = _stage_cfg(files)
    old_val = _queries(g for _, val in _per_file_split(files) for g in val)
    per_file = RerankerDataModule([str(f) for f in files], 0.2, None, None, 2, 2, 0, heldout_numbering="per_file")
    along = RerankerDataModule([str(f) for f in files], 0.2, None, None, 2, 2, 0)
    ckpt = tmp_path / "last.ckpt"
    resumed = {"path": None}
    monkeypatch.setattr(reranker_stage, "resume_checkpoint", lambda cfg, out, check: resumed["path"])

    def numbering(content: dict | None) -> RerankerDataModule:
        resumed["path"] = None
        if content is not None:
            torch.save({"global_step": 3, **content}, ckpt)
            resumed["path"] = str(ckpt)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            return reranker_stage.resumed_datamodule(cfg, tmp_path, scorer=None)

    # A fresh run, and a checkpoint that records its numbering (Lightning keeps the datamodule's state).
    assert numbering(None).stats["heldout_numbering"] == "sequence"
    assert numbering({"RerankerDataModule": along.state_dict()}).stats["heldout_numbering"] == "sequence"
    data = numbering({"RerankerDataModule": per_file.state_dict()})
    assert data.stats["heldout_numbering"] == "per_file" and "written before" not in caplog.text
    # Written before the record: per file, the earlier way, kept and said (whatever its training order).
    for content in ({}, {ORDER_KEY: per_file.stats["training_order"]["hash"]}, {ORDER_KEY: "another order"}):
        data = numbering(content)
        assert data.stats["heldout_numbering"] == "per_file"
        assert _queries(data.val_sets["synthetic_heldout"].groups) == old_val
        assert not _queries(data.train_set.groups) & old_val
        assert "written before the reranker numbered the groups without a query_id along the list" in caplog.text
        assert "data.heldout_numbering=per_file" in caplog.text
    # Files whose numbering decides nothing (every group after the first file's with an id): nothing said.
    cfg = _stage_cfg([files[0], _retriever_run(tmp_path / "run_a", "a")])
    assert numbering({}).stats["heldout_numbering"] == "per_file" and "written before" not in caplog.text
