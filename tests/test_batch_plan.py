import pytest
from omegaconf import OmegaConf

from chipadapt.batch_plan import batch_plan, world_size
from chipadapt.errors import ChipadaptError


def cfgs(global_batch, micro, devices=1, nodes=1, accelerator="cpu"):
    data = OmegaConf.create({"global_batch_size": global_batch, "micro_batch_size": micro, "seq_len": 128})
    trainer = OmegaConf.create({"devices": devices, "num_nodes": nodes, "accelerator": accelerator})
    return data, trainer


@pytest.mark.parametrize(
    "global_batch,micro,devices,nodes,accumulation",
    [(256, 1, 8, 32, 1), (256, 2, 8, 2, 8), (8, 1, 1, 1, 8), (8, 4, [0, 1], 1, 1), (16, 2, "2", 1, 4)],
)
def test_accumulation_keeps_the_global_batch(global_batch, micro, devices, nodes, accumulation):
    plan = batch_plan(*cfgs(global_batch, micro, devices, nodes))
    assert plan.accumulation == accumulation
    assert plan.micro_batch * plan.world_size * plan.accumulation == global_batch
    assert plan.tokens_per_step == global_batch * 128


def test_indivisible_global_batch_is_an_error_naming_the_keys():
    with pytest.raises(ChipadaptError, match=r"data\.global_batch_size=10 .* data\.micro_batch_size=4 x 1"):
        batch_plan(*cfgs(10, 4))


def test_auto_devices_is_one_process_without_a_gpu_and_one_per_gpu_with_them():
    import torch

    _, trainer = cfgs(8, 1, devices="auto", accelerator="auto")
    assert world_size(trainer) == (torch.cuda.device_count() if torch.cuda.is_available() else 1)
