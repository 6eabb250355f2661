import pytest
from conftest import SHARED_DATA, compose

from chipadapt.pipeline import train


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_each_logger_writes_its_files_and_keeps_metrics_csv(tmp_path, tiny_overrides, logger, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose([*tiny_overrides, f"logger={logger}", "trainer.max_steps=2", "stage.validate_before=false"], tmp_path)
    train(cfg)
    assert (tmp_path / "metrics.csv").read_text().count("\n") > 2
    if logger == "tensorboard":
        assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    else:
        assert cfg.logger.wandb.offline is True
        assert list((tmp_path / "wandb").glob("offline-run-*"))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "corpus").is_dir(), reason="../shared/data absent")
def test_shared_corpus_blend_reads_every_source_with_general_text_near_ten_percent(tmp_path):
    from hydra.utils import instantiate

    from chipadapt.models.hf_folder import load_tokenizer, resolve_model_folder

    cfg = compose(["model=tiny", "data=shared_corpus", f"paths.shared_data={SHARED_DATA}"], tmp_path)
    tokenizer = load_tokenizer(resolve_model_folder(cfg.model))
    datamodule = instantiate(cfg.stage.datamodule)(
        data=cfg.data,
        tokenizer=tokenizer,
        separator_token=cfg.model.doc_separator,
        token_cache_dir=str(tmp_path / "tokens"),
        seed=cfg.seed,
    )
    datamodule.setup("fit")
    shares = {row.name: row.share for row in datamodule.blend}
    assert set(shares) == {"openroad", "orfs", "ibex", "opentitan", "yosys", "picorv32", "wiki"}
    assert 0.05 < shares["wiki"] < 0.15
    assert next(r for r in datamodule.blend if r.name == "wiki").val_docs == 0  # general held out elsewhere
    assert set(datamodule.val_split_names) == {"domain", "general"}
    assert datamodule.stats["packing_efficiency"] > 0.99
