"""Framework overhead: DAPT tokens/s through Lightning (our module, datamodule, callbacks and
loggers) vs. a plain PyTorch loop on the same model, data, batch and optimizer, in one run.

  python benchmarks/framework_overhead.py                       # SmolLM2-135M, seq 256
  python benchmarks/framework_overhead.py model=tiny data.seq_len=64

Rounds alternate plain/Lightning so machine noise hits both; prints the median ratio (target >= 0.95).
"""

import logging
import statistics
import tempfile
import time

import lightning as L
import torch
from _config import benchmark_config
from hydra.utils import instantiate

from chipadapt.batch_plan import batch_plan
from chipadapt.models.hf_folder import load_tokenizer, resolve_model_folder
from chipadapt.modules.optim import decay_groups

WARMUP, STEPS, ROUNDS = 2, 6, 2
DEFAULTS = ["data.seq_len=256", "data.micro_batch_size=1", "data.global_batch_size=2", "stage.validate_before=false"]


class StepClock(L.Callback):
    def __init__(self):
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if len(self.stamps) < trainer.global_step:
            synchronize()
            self.stamps.append(time.perf_counter())


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def plain_loop(cfg, folder, datamodule, plan) -> float:
    from chipadapt.models.hf_folder import load_causal_lm

    torch.manual_seed(cfg.seed)
    # Mirror the Trainer's device and precision so the comparison is like for like.
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=str(cfg.trainer.precision) == "bf16-mixed")
    model = load_causal_lm(folder, cfg.model.dtype, cfg.model.attn_implementation).train().to(device)
    optimizer = instantiate(cfg.optim.optimizer)(params=decay_groups(model, cfg.optim.optimizer.weight_decay))
    loader = iter(datamodule._loader(datamodule.train_set))
    stamps = []
    for _ in range(WARMUP + STEPS):
        for _ in range(plan.accumulation):
            batch = {k: v.to(device) for k, v in next(loader).items()}
            with autocast:
                loss = model(**batch).loss / plan.accumulation
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.gradient_clip_val)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        stamps.append(time.perf_counter())
    return STEPS * plan.tokens_per_step / (stamps[-1] - stamps[WARMUP - 1])


def lightning_loop(cfg, folder, datamodule, plan, out) -> float:
    torch.manual_seed(cfg.seed)
    module = instantiate(cfg.stage.module)(
        model_folder=folder,
        dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        optim=cfg.optim,
    )
    clock = StepClock()
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None] + [clock]
    trainer = instantiate(
        cfg.trainer,
        accumulate_grad_batches=plan.accumulation,
        gradient_clip_val=cfg.optim.gradient_clip_val,
        logger=[instantiate(c) for c in cfg.logger.values() if c is not None],
        callbacks=callbacks,
        default_root_dir=out,
        max_steps=WARMUP + STEPS,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=datamodule)
    return STEPS * plan.tokens_per_step / (clock.stamps[-1] - clock.stamps[WARMUP - 1])


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as out:
        cfg = benchmark_config(DEFAULTS, out)
        folder = resolve_model_folder(cfg.model)
        plan = batch_plan(cfg.data, cfg.trainer)
        datamodule = instantiate(cfg.stage.datamodule)(
            data=cfg.data,
            tokenizer=load_tokenizer(folder),
            separator_token=cfg.model.doc_separator,
            token_cache_dir=cfg.paths.token_cache,
            seed=cfg.seed,
        )
        datamodule.prepare_data()
        datamodule.setup("fit")
        ratios = []
        for round_ in range(ROUNDS):
            plain = plain_loop(cfg, folder, datamodule, plan)
            lit = lightning_loop(cfg, folder, datamodule, plan, f"{out}/round{round_}")
            ratios.append(lit / plain)
            print(f"round {round_}: plain {plain:8.1f} tok/s   lightning {lit:8.1f} tok/s   ratio {lit / plain:.3f}")
        print(
            f"model={cfg.model.name} seq_len={plan.seq_len} global_batch={plan.global_batch} "
            f"(micro {plan.micro_batch} x accumulation {plan.accumulation}), {STEPS} timed steps after {WARMUP} warm-up"
        )
        print(f"median ratio lightning/plain = {statistics.median(ratios):.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
