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
    [(256, 1, 8, 32, 1), (256, 2, 8, 2, 8), (8, 1, 1, 1, 8), (8, 4, 2, 1, 1), (16, 2, "2", 1, 4)],
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


def test_the_plan_counts_the_steps_lightning_will_take_and_says_when_max_steps_is_capped():
    from chipadapt.batch_plan import planned_steps

    assert planned_steps(55, -1, 1) == (55, None)  # one pass over the blend, the default
    assert planned_steps(55, 600, 20) == (600, None)  # 20 epochs hold 1,100 steps: max_steps ends it
    assert planned_steps(55, 30, 1) == (30, None)
    steps, note = planned_steps(55, 400, 1)
    assert steps == 55 and "trainer.max_steps=400 is more than trainer.max_epochs=1 holds" in note
    assert planned_steps(55, 23200, None) == (23200, None)  # max_epochs unset with max_steps: no epoch limit
    assert planned_steps(55, -1, None) == (55_000, None)  # neither set: Lightning's 1000 epochs
    assert planned_steps(55, 70, -1) == (70, None)
