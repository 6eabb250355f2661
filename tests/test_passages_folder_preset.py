"""`passages=folder`: a user's own documents as passages without deleting the sample's source by hand
(`'~passages.sources.kestrel' '+passages.sources.NAME.path=DIR'` was the only way)."""

import pytest
from conftest import CONF, compose
from omegaconf import OmegaConf


def test_the_folder_preset_builds_passages_from_the_users_folder_for_training_and_evaluation(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from chipadapt.retrieval.build import load_passages

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zap.md").write_text(
        "# Zap\n\n## Placement\n\nThe zap_place command places cells into rows and reports density.\n"
    )
    trained = compose(["stage=retriever", "passages=folder", f"passages.sources.docs.path={docs}"], tmp_path / "run")
    passages = load_passages(None, OmegaConf.to_container(trained.passages, resolve=True))
    assert [p.id for p in passages] == ["docs:zap.md#0"] and "zap_place" in passages[0].text
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        evaluated = hydra_compose(
            "evaluate",
            overrides=[
                "eval=[retrieval]",
                "passages@eval.retrieval.build=folder",
                f"eval.retrieval.build.sources.docs.path={docs}",
            ],
        )
    assert list(evaluated.eval.retrieval.build.sources) == ["docs"]
    unset = compose(["stage=retriever", "passages=folder"], tmp_path / "run")
    with pytest.raises(Exception, match="passages.sources.docs.path"):
        OmegaConf.to_container(unset.passages, resolve=True, throw_on_missing=True)
