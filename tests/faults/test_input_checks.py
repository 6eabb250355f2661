"""Bad input found by reading the code paths from config to loader: each is one ChipadaptError that names
the file and line or the key, raised before the work it would otherwise waste (in-process, fast)."""

import json

import pytest
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError


def write(path, *records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_an_mcq_record_without_a_question_names_its_line(tmp_path):
    from chipadapt.eval.tasks.mcq import read_mcq

    path = write(
        tmp_path / "q.jsonl", {"question": "q", "choices": ["a", "b"], "answer": 0}, {"choices": ["a"], "answer": 0}
    )
    with pytest.raises(ChipadaptError, match=r"q.jsonl:2: not a multiple-choice record .*: no question"):
        read_mcq(path, "eval.mcq.path")
    out_of_range = write(tmp_path / "r.jsonl", {"question": "q", "choices": ["a", "b"], "answer": 5})
    with pytest.raises(ChipadaptError, match=r"r.jsonl:1: .*: answer 5 is outside the 2 choices \(0-based\)"):
        read_mcq(out_of_range, "eval.mcq.path")


@pytest.mark.parametrize(
    "record",
    [
        {"prompt": "Write a haiku about clocks."},  # a user's own prompts, without IFEval's fields
        {"key": 1, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []},
    ],
)
def test_an_ifeval_record_is_checked_before_any_generation(tmp_path, record):
    from chipadapt.eval.tasks.ifeval import read_ifeval

    good = {"key": 0, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    path = write(tmp_path / "ifeval.jsonl", good, record)
    with pytest.raises(ChipadaptError, match=r"ifeval.jsonl:2: an IFEval record needs 'key'"):
        read_ifeval(path)


@pytest.mark.parametrize(
    ("device", "message"),
    [("gpu", "device: 'gpu' is not a device"), ("cuda:99", "device: cuda:99 asked for")],
)
def test_the_device_is_checked_with_the_config(device, message):
    from chipadapt.config_schema import validate

    with pytest.raises(ChipadaptError, match=message):
        validate(OmegaConf.create({"device": device}))
    validate(OmegaConf.create({"device": "cpu"}))
    validate(OmegaConf.create({"device": "auto"}))


def test_an_evaluation_metric_to_optimise_must_be_of_a_selected_task():
    from chipadapt.config_schema import validate

    with pytest.raises(ChipadaptError, match=r"optimized_metric: 'mcq.acc' is not a metric of the selected tasks"):
        validate(OmegaConf.create({"eval": {"perplexity": {}}, "optimized_metric": "mcq.acc"}))
    validate(OmegaConf.create({"eval": {"mcq": {}}, "optimized_metric": "mcq.acc"}))
    validate(OmegaConf.create({"stage": {}, "eval": {}, "optimized_metric": "val/domain/bpb"}))  # train.py: after


def test_a_merge_schedule_pattern_must_be_a_regular_expression():
    from chipadapt.config_schema import check_merge

    schedule = [{"pattern": r"layers\.1\.", "lam": 0.2}, {"pattern": r"layers\.(0", "lam": 0.3}]
    with pytest.raises(ChipadaptError, match=r"merge.schedule\[1\].pattern: 'layers\\\\.\(0' is not a regular"):
        check_merge({"lam": 0.5, "allow_extrapolation": False, "schedule": schedule})


def test_a_model_folder_with_a_broken_config_or_index_names_the_key(tmp_path):
    from chipadapt.merge.io import SafetensorsModel

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama",')  # cut short
    with pytest.raises(ChipadaptError, match=r"models.chip: .*config.json: not valid JSON"):
        SafetensorsModel(str(folder), "models.chip")
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(ChipadaptError, match=r"models.chip: .*index.json has no weight_map"):
        SafetensorsModel(str(folder), "models.chip")


def test_an_unknown_retriever_name_lists_the_ones_configured():
    from chipadapt.retrieval.build import chosen_retriever

    with pytest.raises(ChipadaptError, match=r"retrieval.use: 'dense' is not one of \['bm25', 'hybrid'\]"):
        chosen_retriever({"bm25": object(), "hybrid": object()}, "dense", "retrieval.use")


def test_a_split_with_no_query_names_the_key_that_chose_it():
    from chipadapt.retrieval.queries import Query, select_split

    queries = [Query("q1", "how", ("p1",), extra={"split": "test"})]
    assert select_split(queries, "test", "qs.jsonl") == queries
    with pytest.raises(
        ChipadaptError, match=r"qs.jsonl: no query has split 'dev' \(eval.retrieval.fusion.tune_on=dev\)"
    ):
        select_split(queries, "dev", "qs.jsonl", "eval.retrieval.fusion.tune_on")
    unmarked = [Query("q1", "how", ("p1",))]
    with pytest.raises(
        ChipadaptError, match=r"no query has a 'split' field \(dev\|test\); use eval.retrieval.split=all"
    ):
        select_split(unmarked, "test", "qs.jsonl", "eval.retrieval.split")


def test_compare_takes_one_run_as_a_list_and_names_a_bad_items_line(tmp_path):
    from chipadapt.eval.compare import as_list
    from chipadapt.eval.items import read_items

    cfg = OmegaConf.create({"runs": "outputs/a", "labels": None, "metrics": ["mcq.acc"], "x": 3})
    assert as_list(cfg, "runs") == ["outputs/a"]  # not ['o', 'u', 't', ...]
    assert as_list(cfg, "labels") is None and as_list(cfg, "metrics") == ["mcq.acc"]
    with pytest.raises(ChipadaptError, match=r"x: 3 is not a list"):
        as_list(cfg, "x")
    items = write(tmp_path / "mcq_items.jsonl", {"id": "a", "scores": {"acc": 1}}, '{"id": "b" "scores": {}}')
    with pytest.raises(ChipadaptError, match=r"mcq_items.jsonl:2: malformed JSON"):
        read_items(items)
    write(items, {"id": "a", "scores": {"acc": 1}}, {"id": "b"})
    with pytest.raises(ChipadaptError, match=r"mcq_items.jsonl:2: an item needs 'id' and a 'scores' object"):
        read_items(items)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mcq": {"limit": "abc"}}, r"eval.mcq.limit: 'abc' is not a whole number >= 1"),
        ({"ifeval": {"max_new_tokens": 0}}, r"eval.ifeval.max_new_tokens: 0 is not a whole number >= 1"),
        ({"retrieval": {"mrr_k": 2.5}}, r"eval.retrieval.mrr_k: 2.5 is not"),
    ],
)
def test_an_eval_tasks_counts_are_checked_with_the_config(overrides, message):
    from chipadapt.config_schema import validate

    with pytest.raises(ChipadaptError, match=message):
        validate(OmegaConf.create({"eval": overrides}))
    validate(OmegaConf.create({"eval": {"mcq": {"limit": None, "batch_size": 8}, "ifeval": {"num_fewshot": 0}}}))


def _retrieval_task(tmp_path, misses_file):
    from chipadapt.eval.tasks.retrieval import RetrievalTask

    return RetrievalTask(
        passages=str(tmp_path / "p.jsonl"),
        build=None,
        queries=str(tmp_path / "q.jsonl"),
        split="all",
        encoders=OmegaConf.create({}),
        dense=OmegaConf.create({}),
        bm25=None,
        hybrid=None,
        fusion=None,
        ks=[1],
        mrr_k=10,
        limit=None,
        index_dir=None,
        misses_file=str(misses_file),
        misses_k=1,
    )


def test_the_misses_file_never_replaces_a_users_file_or_an_input(tmp_path):
    from chipadapt.retrieval.misses import misses_markdown

    notes = tmp_path / "notes.md"
    notes.write_text("# My notes on the retriever\n")
    write(tmp_path / "q.jsonl", {"id": "q1", "query": "how", "positive_ids": ["p1"]})
    with pytest.raises(ChipadaptError, match=r"eval.retrieval.misses_file: .*notes.md exists and was not written"):
        _retrieval_task(tmp_path, notes)
    with pytest.raises(ChipadaptError, match=r"misses_file: .*q.jsonl is eval.retrieval.queries itself"):
        _retrieval_task(tmp_path, tmp_path / "q.jsonl")
    earlier = tmp_path / "misses.md"  # a rerun's own earlier report is replaced
    earlier.write_text(misses_markdown([], ["bm25"], {}, 8))
    _retrieval_task(tmp_path, earlier)
    _retrieval_task(tmp_path, tmp_path / "new.md")


def test_annotate_output_never_replaces_its_input_or_a_users_file(tmp_path):
    from chipadapt.io.outputs import check_output_file
    from chipadapt.stages.annotate import _annotated_by_us

    chats = write(tmp_path / "chat.jsonl", {"id": "c1", "messages": [], "attributes": {"quality": 4}})
    inputs = [("annotate.input.path", str(chats))]
    with pytest.raises(ChipadaptError, match=r"annotate.output: .*chat.jsonl is annotate.input.path itself"):
        check_output_file(chats, "annotate.output", _annotated_by_us, inputs)
    theirs = write(tmp_path / "helpsteer.jsonl", {"id": "h1", "messages": [], "attributes": {"quality": 3}})
    with pytest.raises(ChipadaptError, match=r"helpsteer.jsonl exists and was not written by this command"):
        check_output_file(theirs, "annotate.output", _annotated_by_us, inputs)
    ours = write(tmp_path / "annotated.jsonl", {"id": "c1", "messages": [], "attributes": {}, "human_attributes": None})
    assert check_output_file(ours, "annotate.output", _annotated_by_us, inputs) == ours.resolve()


def test_compare_writes_only_to_its_run_folder_a_new_folder_or_its_own_earlier_output(tmp_path):
    from chipadapt.eval.compare import output_folder
    from chipadapt.eval.compare_runs import Run

    (tmp_path / "runA").mkdir()
    runs = [Run(tmp_path / "runA", "evaluate", "completed", {}, {}, "a")]
    cfg = lambda output, overwrite=False: OmegaConf.create(  # noqa: E731
        {"output": str(output), "overwrite": overwrite, "paths": {"output_dir": str(tmp_path / "run")}}
    )
    assert output_folder(cfg(tmp_path / "run"), runs) == tmp_path / "run"  # the default: the run's own folder
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "compare.md").write_text("my own table\n")
    with pytest.raises(ChipadaptError, match=r"output: .*notes exists and is not an output of compare"):
        output_folder(cfg(notes), runs)
    assert (notes / "compare.md").read_text() == "my own table\n"
    with pytest.raises(ChipadaptError, match=r"output: .*runA/cmp lies inside runs"):
        output_folder(cfg(tmp_path / "runA" / "cmp"), runs)
    fresh = output_folder(cfg(tmp_path / "cmp"), runs)
    (fresh / "compare.md").write_text("| run |\n")
    with pytest.raises(ChipadaptError, match=r"holds a previous compare output; overwrite=true replaces it"):
        output_folder(cfg(tmp_path / "cmp"), runs)
    assert output_folder(cfg(tmp_path / "cmp", overwrite=True), runs) == tmp_path / "cmp"


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.curate.dedup.threshold=1.5", r"data.curate.dedup.threshold: 1.5 must be <= 1"),
        ("data.curate.limits.min_chars=abc", r"data.curate.limits.min_chars: Value 'abc'"),
        ("data.curate.dedup.shingle=0", r"data.curate.dedup.shingle: 0 must be >= 1"),
        ("data.curate.workers=-1", r"data.curate.workers: -1 must be >= 1"),
        ("+data.curate.dedup.nope=1", r"data.curate.dedup.nope: unknown key"),
    ],
)
def test_curation_settings_are_checked_with_the_config(override, message):
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    from chipadapt.config_schema import validate

    def curate_section(overrides):  # without Hydra's run-time settings, which only a run has
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return OmegaConf.create({"data": OmegaConf.to_container(compose("curate", overrides).data)})

    validate(curate_section([]))
    with pytest.raises(ChipadaptError, match=message):
        validate(curate_section([override]))


def test_whole_numbers_written_as_floats_are_taken_as_the_ints_they_are():
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    from chipadapt.config_schema import validate

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        curate = OmegaConf.create({"data": OmegaConf.to_container(compose("curate", []).data)})
    curate.data.curate.limits.max_bytes, curate.data.curate.workers = 5e6, 2.0
    validate(curate)
    assert type(curate.data.curate.limits.max_bytes) is int and curate.data.curate.limits.max_bytes == 5_000_000
    assert type(curate.data.curate.workers) is int
    tasks = OmegaConf.create({"eval": {"mcq": {"limit": 1e3}}, "max_shard_bytes": 2e9})
    validate(tasks)
    assert type(tasks.eval.mcq.limit) is int and type(tasks.max_shard_bytes) is int
    curate.data.curate.workers = 2.5  # not a whole number: still refused, naming the key
    with pytest.raises(ChipadaptError, match=r"data.curate.workers: Value '2.5'"):
        validate(curate)


def test_near_dedup_settings_datasketch_cannot_band_are_one_line_before_any_output(tmp_path):
    from chipadapt.curation.dedup import lsh_index

    lsh_index(128, 0.85)
    with pytest.raises(ChipadaptError, match=r"data.curate.dedup.num_perm: 8 permutations .* num_perm=16 works"):
        lsh_index(8, 0.85)
    with pytest.raises(ChipadaptError, match="a lower threshold works"):
        lsh_index(128, 1.0)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_steps=abc", r"trainer.max_steps: 'abc' is not a whole number >= -1"),
        ("trainer.max_epochs=abc", r"trainer.max_epochs: 'abc' is not a whole number >= -1, null"),
        ("trainer.devices=abc", r"trainer.devices: 'abc' is not a device count"),
        ("trainer.devices=0", r"trainer.devices: 0 is not a device count"),
        ("callbacks.checkpoint.every_n_train_steps=-1", r"callbacks.checkpoint.every_n_train_steps: -1 is not"),
        ("callbacks.progress.every_n_steps=abc", r"callbacks.progress.every_n_steps: 'abc' is not"),
        ("trainer.val_check_interval=1.5", r"trainer.val_check_interval: 1.5 is not a whole number >= 1, a fraction"),
    ],
)
def test_trainer_and_callback_counts_are_checked_with_the_config(tmp_path, override, message):
    from conftest import compose

    from chipadapt.config_schema import validate

    with pytest.raises(ChipadaptError, match=message):
        validate(compose(["model=tiny", override], tmp_path))


def test_trainer_counts_written_as_floats_or_strings_lightning_takes_pass(tmp_path):
    from conftest import compose

    from chipadapt.config_schema import validate

    # GPU indices as a string or a list (trainer=cpu takes a process count: trainer.accelerator=cpu refuses them)
    gpus = ["model=tiny", "trainer.accelerator=gpu"]
    overrides = [*gpus, "trainer.max_steps=2e3", "trainer.devices='0,1'", "trainer.val_check_interval=0.5"]
    cfg = compose(overrides, tmp_path)
    validate(cfg)
    assert cfg.trainer.max_steps == 2000 and type(cfg.trainer.max_steps) is int
    others = [*gpus, "trainer.devices=[0,1]", "callbacks.progress=null", "trainer.max_epochs=null"]
    validate(compose(others, tmp_path))
    # Lightning's ways to switch things off, and its time-based validation interval
    off = [
        "callbacks.checkpoint.every_n_train_steps=0",
        "trainer.log_every_n_steps=0",
        "trainer.num_sanity_val_steps=null",
    ]
    validate(compose(["model=tiny", *off, "trainer.val_check_interval='00:01:00:00'"], tmp_path))
