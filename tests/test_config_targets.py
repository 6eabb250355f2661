"""Every option of every config group composes, every `_target_` in it exists and takes exactly the
keys the YAML gives it (a key the target would not receive fails here), and the parts each command
builds from its config instantiate. The options are read from conf/, not listed by hand."""

import inspect

import pytest
from conftest import CONF
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra._internal.utils import _locate
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

import chipadapt  # noqa: F401  (resolvers)

# group -> (root config, overrides every option of it needs to compose: required values)
ROOTS = {
    "merge": ("merge", ["models.chip=a", "models.instruct=b"]),
    "eval": ("evaluate", []),
    "variant": ("reproduce", []),
}
# Groups whose options are fragments selected by another option or launcher settings, not alone.
NOT_SELECTABLE = {"hydra", "paths", "passages", "retrievers", "retrieval", "rouge", "verilog_shape", "curate"}
REQUIRED = {
    "stage=annotate": ["annotate.attribute_model=a"],
    "stage=bootstrap": ["bootstrap.attribute_model=a"],
    "stage=reranker": ["reranker.train_file=t.jsonl"],
}


def options():
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name not in NOT_SELECTABLE):
        for option in sorted(group.glob("*.yaml")):
            yield f"{group.name}={option.stem}"


def compose_option(override: str, tmp_path) -> DictConfig:
    group = override.split("=")[0]
    root, extra = ROOTS.get(group, ("train", []))
    if group == "eval":
        override = f"eval=[{override.split('=')[1]}]"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(
            root, overrides=[override, *extra, *REQUIRED.get(override, []), f"paths.output_dir={tmp_path}"]
        )


def target_nodes(node, path=""):
    """(dotted path, node) of every config node with a `_target_`."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key in node:
            if not OmegaConf.is_missing(node, key):
                yield from target_nodes(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from target_nodes(item, f"{path}[{i}]")


def assert_target_takes_its_keys(path: str, node: DictConfig) -> None:
    target = _locate(node._target_)
    keys = [k for k in node if not str(k).startswith("_")]
    try:
        inspect.signature(target).bind_partial(**dict.fromkeys(keys))
    except TypeError as err:
        pytest.fail(f"{path}: {node._target_} does not take {keys}: {err}")
    except ValueError:  # a builtin without a signature
        pass


@pytest.mark.parametrize("override", list(options()))
def test_every_option_composes_and_its_targets_take_their_keys(tmp_path, override):
    cfg = compose_option(override, tmp_path)
    nodes = list(target_nodes(cfg))
    assert nodes, override
    for path, node in nodes:
        if path.startswith("hydra"):
            continue
        assert_target_takes_its_keys(path, node)


@pytest.mark.parametrize("stage", sorted(p.stem for p in (CONF / "stage").glob("*.yaml")))
def test_every_stage_builds_its_runner_and_parts(tmp_path, stage):
    cfg = compose_option(f"stage={stage}", tmp_path)
    assert callable(instantiate(cfg.stage.runner))
    for part in ("module", "datamodule"):  # partials: the recipe adds what exists only at run time
        if part in cfg.stage:
            built = instantiate(cfg.stage[part])
            assert callable(built) and built.func.__name__ == cfg.stage[part]._target_.split(".")[-1]


@pytest.mark.parametrize("task", sorted(p.stem for p in (CONF / "eval").glob("*.yaml")))
def test_every_eval_task_instantiates_as_a_task(tmp_path, task):
    from chipadapt.protocols import EvalTask

    cfg = compose_option(f"eval={task}", tmp_path)
    assert isinstance(instantiate(cfg.eval[task]), EvalTask)


@pytest.mark.parametrize("method", sorted(p.stem for p in (CONF / "merge").glob("*.yaml")))
def test_every_merge_method_instantiates(tmp_path, method):
    cfg = compose_option(f"merge={method}", tmp_path)
    assert callable(instantiate(cfg.merge.method))
