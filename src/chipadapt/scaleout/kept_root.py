"""FSDP's root wrapper kept for the Trainer's next fit, validate or test of the same module.

Every `trainer.fit`/`validate` connects the bare LightningModule again and Lightning's FSDPStrategy
wraps it anew (2.6, `_setup_model`). The second time its decoder layers are FSDP units already, so
Lightning wraps nothing: the root's own parameters (embeddings, final norm, lm_head) stay this
rank's flat shards (1-D views, `use_orig_params`) and the first forward fails on every rank
("'weight' must be 2-D"). A DAPT run validates before it fits and after, on one Trainer. The root
made the first time still holds those parameters and the layers; it is given back, so that
`trainer.strategy.model` is the FSDP root (full state dicts, `clip_grad_norm_`) and nothing is
wrapped, synchronised from rank 0 or checkpointed twice."""

from torch import nn


class KeepsFSDPRoot:
    """For Lightning's FSDPStrategy: `_setup_model` of a module this strategy wrapped before returns
    the root it made then. The optimizer of a fit after a validate is built on the module's own
    parameters (`use_orig_params`, Lightning's default), which that root manages."""

    def _setup_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        root = getattr(self, "_kept_fsdp_root", None)
        if root is not None and root.module is model:
            return root
        wrapped = super()._setup_model(model)
        if isinstance(wrapped, FullyShardedDataParallel):
            self._kept_fsdp_root = wrapped
        return wrapped
