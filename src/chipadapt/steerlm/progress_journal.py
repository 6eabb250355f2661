"""What an interrupted stage=annotate or stage=bootstrap round had done, kept for its rerun.

Both stages publish one file at their end; before this journal a Ctrl-C or a preemption after an hour of
rating lost every rating and sample made. They keep their work the way evaluate.py's tasks keep their
answers (io/answer_journal.py): each reply sampled and each rating made is appended to
`<run folder>/<stage>.progress.jsonl` as soon as it is complete, and a rerun in the same folder looks each
request up there before computing it. The journal's key is everything the answers depend on: the stage's
settings and chat template, its models and input file by identity (size and modification time), and
chipadapt's code; a journal written under another key (other settings, a retrained model, an edited
input) is started afresh, with a line saying so. `resume=false` starts it afresh too. It is removed only
once the run's manifest says completed (on the rerun that passes it as done): removed as the output was
published, a signal before the manifest recorded the run left a folder that neither passes as done nor
keeps a rating."""

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.io.answer_journal import AnswerJournal
from chipadapt.io.hashing import sha256_json
from chipadapt.io.identity import by_identity, code_version

SUFFIX = ".progress.jsonl"


def journal_path(out: Path, stage: str) -> Path:
    return Path(out) / f"{stage}{SUFFIX}"


def drop_when_completed(out: Path, stage: str) -> bool:
    """Remove `stage`'s journal from run folder `out` where its manifest says the run completed (its output
    published and recorded: nothing is left to continue); True where one was removed."""
    try:
        status = json.loads((Path(out) / "manifest.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return False
    path = journal_path(out, stage)
    if status != "completed" or not path.exists():
        return False
    path.unlink(missing_ok=True)
    return True


def progress_journal(cfg: DictConfig, out: Path, stage: str, models: dict[str, Path]) -> AnswerJournal:
    """The journal of `stage`'s ratings and samples in run folder `out`; `models`: {name: folder} of the
    models whose answers it keeps (the attribute model, bootstrap's generator)."""
    section = OmegaConf.to_container(cfg[stage], resolve=True)
    parts = {
        "stage": stage,
        "settings": by_identity(section),  # the input file and attribute model by identity
        "template": OmegaConf.to_container(cfg.data.template, resolve=True),
        "models": {name: by_identity(str(folder)) for name, folder in models.items()},
        "loading": [OmegaConf.select(cfg, f"model.{k}", default=None) for k in ("dtype", "attn_implementation")]
        if stage == "bootstrap"
        else None,
        # Bootstrap samples: its replies are draws of the generator seeded with `seed` (stages/common.py); a rerun
        # with another seed asks for other draws, not these. Annotate's ratings are deterministic: no seed.
        "seed": OmegaConf.select(cfg, "seed", default=None) if stage == "bootstrap" else None,
        "code": code_version(),
    }
    key = sha256_json(parts)
    reuse = OmegaConf.select(cfg, "resume", default=True) is not False
    return AnswerJournal(journal_path(out, stage), key, model=None, reuse=reuse)
