"""Keys a command line adds that nothing reads, and config files that are not YAML, each refused in one line
naming the key or the file (config-fuzz trial 32): `+resum=false` was dropped without a word, `+eval.perplexity.foo`
was told as Hydra's "Error in call to target" without its place, a malformed YAML file in `--config-dir` was a
PyYAML traceback, and a benchmark's bad override a Hydra traceback."""

import sys
from pathlib import Path

import pytest
from helpers.entry_jobs import entry_job

from chipadapt.config_schema import check_added_root_keys, validate
from chipadapt.errors import ChipadaptError

ROOT = Path(__file__).resolve().parents[1]


def refusal(config_name: str, overrides: list[str], tmp_path: Path) -> str:
    with entry_job(config_name, overrides, tmp_path / "run") as cfg:
        with pytest.raises(ChipadaptError) as refused:
            validate(cfg)
    return str(refused.value)


@pytest.mark.parametrize(
    ("config_name", "overrides", "expected"),
    [
        (
            "train",
            ["model=tiny", "+resum=false"],
            "resum: unknown key (conf/train.yaml and its groups have no `resum`; ",
        ),
        (
            "train",
            ["model=tiny", "+fooo.bar=1"],
            "fooo.bar: unknown key (conf/train.yaml and its groups have no `fooo`",
        ),
        ("export", ["run=RUN", "+overwrit=true"], "overwrit: unknown key ("),
        ("evaluate", ["model=tiny", "eval=[perplexity]", "+foo=1"], "foo: unknown key ("),
    ],
)
def test_a_top_level_key_added_that_no_config_has_is_refused_naming_it(config_name, overrides, expected, tmp_path):
    message = refusal(config_name, overrides, tmp_path)
    assert message.startswith(expected), message
    if "resum" in overrides[-1] or "overwrit" in overrides[-1]:
        assert message.endswith(f"did you mean {overrides[-1][1:].split('=')[0]}e?)"), message


@pytest.mark.parametrize(
    ("config_name", "overrides"),
    [
        # What README and the reproduction add with `+`: under a group or a key the command's config has.
        ("train", ["model=tiny", "+data.sources.mine.path=x.jsonl", "+callbacks.k._target_=a.B", "+peft.use_dora=1"]),
        ("evaluate", ["model=tiny", "eval=[retrieval]", "+eval.retrieval.encoders.finetuned.path=enc"]),
        ("merge", ["+merge.schedule=[]", "+eval.perplexity.max_documents=1", "++preset=chipadapt"]),
        ("chat", ["+retrieval.index_dir=idx", "+generate.system=x"]),  # chat's own checks name these
        ("compare", ["runs=[a]", "hydra.job.chdir=false"]),
        ("train", ["model=tiny", "~seed", "+seed=7", "~loss_guard", "+loss_guard={window: 3}"]),  # replaced whole
    ],
)
def test_what_is_added_under_a_known_key_or_group_is_left_to_its_checks(config_name, overrides, tmp_path):
    with entry_job(config_name, overrides, tmp_path / "run") as cfg:
        check_added_root_keys(cfg)


@pytest.mark.parametrize(
    ("config_name", "overrides", "expected"),
    [
        (
            "evaluate",
            ["model=tiny", "eval=[perplexity]", "+eval.perplexity.foo=1"],
            "eval.perplexity.foo: unknown key (chipadapt.eval.tasks.perplexity.PerplexityTask takes splits,",
        ),
        (
            "merge",
            ["models.chip=a", "models.instruct=b", "+merge.method.foo=1"],
            "merge.method.foo: unknown key (chipadapt.merge.methods.chipalign.ChipAlign takes no settings)",
        ),
        (
            "merge",
            ["merge=ties", "models.chip=a", "models.instruct=b", "+merge.method.densty=0.5"],
            "merge.method.densty: unknown key (did you mean density? chipadapt.merge.methods.task_vectors.Ties takes",
        ),
    ],
)
def test_a_key_its_target_does_not_take_is_refused_naming_it_and_what_it_takes(
    config_name, overrides, expected, tmp_path
):
    assert refusal(config_name, overrides, tmp_path).startswith(expected)


def test_a_config_file_that_is_not_yaml_is_one_line_naming_its_file_and_line(tmp_path):
    from hydra import compose, initialize_config_dir

    from chipadapt.cli import describe_hydra_error

    (tmp_path / "optim").mkdir()
    (tmp_path / "main.yaml").write_text("defaults:\n  - optim: good\n  - _self_\n")
    (tmp_path / "optim" / "good.yaml").write_text("lr: 1\n")
    (tmp_path / "optim" / "bad.yaml").write_text("name: bad\nlr: [1, 2\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        with pytest.raises(Exception) as composing:
            compose("main", overrides=["optim=bad"])
    assert describe_hydra_error(composing.value) == (
        f"{tmp_path / 'optim' / 'bad.yaml'}:3: not valid YAML (while parsing a flow sequence; "
        "expected ',' or ']', but got '<stream end>')"
    )


def test_a_benchmarks_bad_override_is_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setattr(sys, "argv", ["data_prep.py", "foo=1"])
    from _config import benchmark_config

    with pytest.raises(SystemExit) as stopped:
        benchmark_config([], str(tmp_path))
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "chipadapt: error: Could not override 'foo'.; To append to your config use +foo=1: Key 'foo' is not in struct"
    ]


def test_a_key_from_a_config_file_its_target_does_not_take_is_named_when_the_job_instantiates_it(tmp_path):
    """A `--config-dir` file's key: validate imports no target it was not asked about (torch's import), so the
    job's instantiation names it, in place of Hydra's "Error in call to target ...: TypeError(...)"."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from chipadapt.cli import _naming_target_keys

    with entry_job("evaluate", ["model=tiny", "eval=[perplexity]"], tmp_path / "run") as cfg:
        with open_dict(cfg):
            cfg.eval.perplexity.colour = "red"
        with pytest.raises(ChipadaptError, match=r"^eval\.perplexity\.colour: unknown key \(chipadapt\.eval\.tasks"):
            _naming_target_keys(lambda job: instantiate(job.eval.perplexity), cfg)
        with open_dict(cfg):
            del cfg.eval.perplexity.colour
            cfg.eval.perplexity._args_ = list(range(20))  # a TypeError that no key explains: kept as Hydra's
        with pytest.raises(InstantiationException):
            _naming_target_keys(lambda job: instantiate(job.eval.perplexity), cfg)


def test_a_retired_key_added_with_a_plus_is_told_what_replaced_it(tmp_path):
    with pytest.raises(ChipadaptError, match=r"^attribute_order: retired: "):
        with entry_job("chat", ["model=tiny", "+attribute_order=[quality]"], tmp_path / "run") as cfg:
            validate(cfg)
