"""(query, candidate) pairs for the cross-encoder: per query its positive and `n_passages - 1` hard
negatives, from Tevatron-format groups (the synthetic data of `stage=retriever`).

The groups' negatives are BM25's, already cleared of false negatives by the synthetic-data guards.
A share of the groups, chosen by a hash of the query id (the same ones in every run), is held out
for validation: by default the share the retriever run that built the file held out
(`retriever.heldout_fraction` in its manifest.json), which by the same hash is the same groups, so that
the reranker's `synthetic_heldout` figure and the retriever's dev figures are on queries neither trained
on. A list of files whose runs held out different shares is refused with null: no retriever run that
read the list (one share of every file) held out those groups (a resume of a run that kept them, before
such a list was refused, keeps them). Left out of training, as the retriever
leaves them out: the groups asking an evaluation question (`reranker.eval_queries`; null: the
`retriever.eval_queries` the retriever run that built the file read) and those asking a held-out group's
query about the same passages.

A group without a query_id is hashed by where it stands: along the list of files, the retriever run's
way of reading a list of retriever.train_file ("sequence"), or, in a run resumed from a checkpoint of an
earlier chipadapt, from 0 in each file as that checkpoint did ("per_file": stages/reranker.py).
"""

import json
import logging
from pathlib import Path

from chipadapt.data.base import TrainingDataModule
from chipadapt.errors import ChipadaptError
from chipadapt.retrieval.pair_scorer import PairScorer
from chipadapt.retrieval.tevatron_data import GroupDataset, read_tevatron
from chipadapt.retrieval.training_data import eval_questions, group_order, split_groups, without_heldout_questions

log = logging.getLogger(__name__)

# How groups without a query_id are numbered for the held-out hash (stats["heldout_numbering"], and the
# datamodule's state in each checkpoint, so that a resume holds out the groups its checkpoint held out).
SEQUENCE, PER_FILE = "sequence", "per_file"
NUMBERINGS = (SEQUENCE, PER_FILE)


class RerankerDataModule(TrainingDataModule):
    def __init__(
        self,
        train_file: str | list[str],
        heldout_fraction: float | None,
        styles: list[str] | None,
        scorer: PairScorer,
        n_passages: int,
        batch_size: int,
        seed: int,
        eval_queries: str | None = None,
        heldout_numbering: str = SEQUENCE,
        resumed: str | None = None,
    ):
        """`heldout_fraction`: the share of groups held out (None: each file's retriever run's); `styles`: only
        groups of those query styles (None: all); `eval_queries`: the evaluation questions whose copies are left
        out of training (None: those of the retriever runs that built the files); `heldout_numbering`: how a
        group without a query_id is numbered (NUMBERINGS; not a setting: a resume keeps its checkpoint's);
        `resumed`: the checkpoint this run resumes (not a setting: stages/reranker.py), whose run may have kept
        each file's share under null where the files' runs held out different ones (one_share)."""
        # (index, epoch) items: which negatives each epoch sees comes from the sampler, also on resume.
        super().__init__(batch_size, 0, seed, with_epoch=True)
        if n_passages < 2:
            raise ChipadaptError(f"reranker.train.n_passages={n_passages}: at least 2 (the positive and a negative)")
        if heldout_numbering not in NUMBERINGS:
            raise ChipadaptError(f"heldout_numbering={heldout_numbering!r}: one of {', '.join(NUMBERINGS)}")
        self.heldout_numbering = heldout_numbering
        # Whether the two numberings hold out other groups: a file after the first has groups without an id.
        self.numbering_matters = False
        files = [train_file] if isinstance(train_file, (str, Path)) else list(train_file)
        # Every file's share before any is read: a list refused is refused at once.
        self.heldout_fractions = heldout_fractions(files, heldout_fraction, resumed)
        train, val = [], []
        before = 0  # groups of the files before this one
        for file in files:
            fraction = self.heldout_fractions[str(file)]
            # Split as the retriever split the whole file, then filtered. A group without an id is keyed by
            # where it stands: a retriever run read a list of retriever.train_file as one sequence, so every
            # file counts, one it built too (a retriever run split that alone, but synthesis gives every group
            # an id, so where it stands never decides).
            groups = read_tevatron(file)
            first = before if heldout_numbering == SEQUENCE else 0
            file_train, file_val = split_groups(groups, fraction, first)
            self.numbering_matters |= before > 0 and any("query_id" not in g for g in groups)
            before += len(groups)
            train += kept_groups(file_train, styles)
            val += kept_groups(file_val, styles)
        named = {eval_queries: "reranker.eval_queries"} if eval_queries else retriever_questions(files)
        self.eval_queries = list(named)
        asked = [q for path, key in named.items() for q in eval_questions(path, key)]
        train, copies = without_heldout_questions(train, val, asked, "reranker.eval_queries")
        if not train:
            raise ChipadaptError(
                f"reranker.train_file: no training groups with negatives in {', '.join(map(str, files))} (or every "
                "one is held out or asks an evaluation question)"
            )
        self.scorer = scorer
        self.train_set = GroupDataset(train, n_passages, seed, "first")
        if val:
            self.val_sets = {"synthetic_heldout": GroupDataset(val, n_passages, seed + 1, "first")}
        self.stats = {
            "train_sequences": len(train),
            "val_groups": len(val),
            "heldout_fraction": self.heldout_fractions,  # file -> the share of its groups held out
            "heldout_numbering": heldout_numbering,
            **copies,
            "eval_queries": self.eval_queries,
            # What a checkpoint records, to tell a resume on other groups (stages/checkpoint_records.py).
            "training_order": group_order(train),
        }

    def state_dict(self) -> dict:
        """Kept in every checkpoint (Lightning: under the class name), read by stages/reranker.py on resume."""
        return {"heldout_numbering": self.heldout_numbering}

    def load_state_dict(self, state: dict) -> None:
        recorded = state.get("heldout_numbering")
        if recorded is not None and recorded != self.heldout_numbering:  # stages/reranker.py builds it otherwise
            raise ChipadaptError(
                f"the checkpoint resumed held out groups without a query_id by heldout_numbering={recorded}, this "
                f"run by {self.heldout_numbering}: it would hold out other groups than the checkpoint did"
            )

    def collate(self, items: list[tuple[str, list[str]]]) -> dict:
        queries = [q for q, group in items for _ in group]
        passages = [p for _, group in items for p in group]
        return {"pairs": self.scorer.tokenize(queries, passages)}


def kept_groups(groups: list[dict], styles: list[str] | None) -> list[dict]:
    """The groups a cross-encoder trains or validates on: with negatives, of `styles` (None: any)."""
    return [
        g
        for g in groups
        if g.get("negative_passages") and (styles is None or g.get("style", "question") in list(styles))
    ]


def retriever_settings(file) -> dict | None:
    """The `retriever` settings of the retriever run whose synthetic data `file` is (RUN/synthetic/train.jsonl,
    beside RUN/manifest.json), or None: not a retriever run's, or one that read a given train_file."""
    settings = retriever_run_settings(file)
    return settings if settings is not None and "train_file" in settings and settings["train_file"] is None else None


def retriever_run_settings(file) -> dict | None:
    """The `retriever` settings in RUN/manifest.json when `file` is RUN/synthetic/train.jsonl, where a retriever
    run RUN builds its synthetic data (one that read a given retriever.train_file built none), else None. Any
    other file inside a run folder is a user's own, whatever run it lies in."""
    run = synthetic_run(file)
    if run is None:
        return None
    try:
        config = json.loads((run / "manifest.json").read_text(encoding="utf-8"))["config"]
        return dict(config["retriever"]) if config["stage"]["name"] == "retriever" else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def synthetic_run(file) -> Path | None:
    """RUN where `file` is (or links to) RUN/synthetic/train.jsonl, the file stages/retriever.py builds; else None."""
    path = Path(file).resolve()
    run = path.parent.parent
    return run if path == run / "synthetic" / "train.jsonl" else None


def not_synthetic_why(file, wanted: str = "") -> str:
    """Why `file` is no retriever run's synthetic data: not where a run builds it, or no run there (whose
    manifest says `wanted` too)."""
    run = synthetic_run(file)
    if run is None:
        return "not a RUN/synthetic/train.jsonl, where a retriever run builds its synthetic data"
    return f"no {run / 'manifest.json'} of stage=retriever{wanted}"


def heldout_fractions(files: list, configured: float | None, resumed: str | None = None) -> dict[str, float]:
    """{file: the share of its groups held out}: `reranker.heldout_fraction`, or (None) the one of the retriever
    run that built each file, whose held-out groups are then the reranker's (the same hash of each query id),
    if those runs held out one share (one_share). A set share other than a run's is kept and told."""
    built = {str(f): built_share(f) for f in files}
    if configured is None:
        fractions = {}
        for file in files:
            if built[str(file)] is None:
                raise ChipadaptError(f"reranker.heldout_fraction: null holds out the groups {unknown_holdout(file)}")
            fractions[str(file)] = built[str(file)]
        one_share(fractions, resumed)
        return fractions
    other_share_told(files, built, float(configured))
    return {str(f): float(configured) for f in files}


def built_share(file) -> float | None:
    """The retriever.heldout_fraction of the retriever run that built `file`, or None: no run built it."""
    theirs = (retriever_settings(file) or {}).get("heldout_fraction")
    return float(theirs) if isinstance(theirs, (int, float)) else None


def other_share_told(files: list, built: dict[str, float | None], configured: float) -> None:
    """Warn about each file whose run held out another share than the set one. The advice is decided over the
    whole list: null holds out the runs' groups only where every file has a run and all held out one share
    (one_share); otherwise the set share may be that of a retriever run that read the list (one share of every
    file). The same file given twice (./x and x) is one file."""
    shares = set(built.values())
    null_holds_theirs = None not in shares and len(shares) == 1
    told = set()
    several = len({Path(f).resolve() for f in files}) > 1
    for file in files:
        theirs = built[str(file)]
        if theirs is None or theirs == configured or Path(file).resolve() in told:
            continue
        told.add(Path(file).resolve())
        if not null_holds_theirs:
            # A retriever run that read the list held out one share of every file: the set one may be its.
            advice = (
                "keep it if it is the retriever.heldout_fraction of a retriever run that read this list of "
                "reranker.train_file, the retriever run the reranker's figures are compared with"
            )
        else:
            advice = "reranker.heldout_fraction=null holds out the same groups as that run" + (
                f" and those of the other files' runs (every file's run held out {theirs})" if several else ""
            )
        log.warning(
            "reranker.heldout_fraction=%s is not the retriever.heldout_fraction=%s of the retriever run that built "
            "%s: %s; %s",
            configured,
            theirs,
            file,
            "the reranker trains on groups that run held out (its dev figures)"
            if configured < theirs
            else "the reranker holds out groups that run trained on",
            advice,
        )


def one_share(fractions: dict[str, float], resumed: str | None = None) -> None:
    """Refuse a list of files whose retriever runs held out different shares, each file's taken by null: no
    retriever run that read the list held out those groups (it holds out one share of every file), and the
    reranker would train on groups the dev split of one that did scored, whichever share it had. A resume
    (`resumed`: a checkpoint, of a run that kept them before such a list was refused) keeps them, and says so:
    held out otherwise, it would validate on groups it trained on (and a share set on resume is refused as
    another setting than the checkpoint's)."""
    if len(set(fractions.values())) < 2:
        return
    files = f"[{','.join(fractions)}]"  # a list as Hydra takes it in one run ("a,b" would be a sweep)
    shares = ", ".join(f"{file}: {share}" for file, share in fractions.items())
    largest = max(fractions.values())
    if resumed is not None:
        log.warning(
            "resuming %s, whose run kept with reranker.heldout_fraction=null the share each file's retriever run "
            "held out, different shares (%s), as chipadapt did before it refused such a list: kept, so this run "
            "holds out the groups it held out (manifest: data.heldout_fraction); no retriever run that read "
            "reranker.train_file=%s held out those groups: a start over (resume=false) with "
            "reranker.heldout_fraction set to the retriever.heldout_fraction of the retriever run the reranker's "
            "figures are compared with holds out that run's groups (%s, the largest, trains on no group any of "
            "those runs held out)",
            resumed,
            shares,
            files,
            largest,
        )
        return
    raise ChipadaptError(
        f"reranker.heldout_fraction: null holds out the share the retriever run that built each file held out, "
        f"and the runs that built reranker.train_file={files} held out different shares ({shares}), so no "
        "retriever run that read that list held out those groups (one share of every file); set "
        "reranker.heldout_fraction to the retriever.heldout_fraction of the retriever run the reranker's "
        f"figures are compared with ({largest}, the largest, trains on no group any of those "
        "runs held out)"
    )


def unknown_holdout(file) -> str:
    """Why no retriever run's held-out groups are known for `file`, and what to set instead: two cases, since
    a retriever run given its groups (retriever.train_file) held out that file's, with a share it names."""
    manifest = Path(file).resolve().parent.parent / "manifest.json"
    run = retriever_run_settings(file)
    if run is not None and run.get("train_file") is not None:
        given = run["train_file"]
        # A list as Hydra takes it in one run ("a,b" would be a sweep), in the retriever's order: a group
        # without a query_id is keyed by where it stands in the files' sequence, on both sides.
        given = f"[{','.join(map(str, given))}]" if isinstance(given, list) else given
        return (
            f"the retriever run that built {file} held out, and the retriever run of {manifest} built none: it "
            f"read retriever.train_file={given} and held out groups of that; set reranker.heldout_fraction (to hold "
            f"out the groups that run held out, reranker.train_file={given} with reranker.heldout_fraction="
            f"{run.get('heldout_fraction')}, its retriever.heldout_fraction)"
        )
    return (
        f"the retriever run that built {file} held out, and it is not a retriever run's synthetic data "
        f"({not_synthetic_why(file, ' naming retriever.heldout_fraction')}): set reranker.heldout_fraction (to "
        "the retriever.heldout_fraction of a retriever run that read it as retriever.train_file, to hold out "
        "the groups that run held out)"
    )


def retriever_questions(files: list) -> dict[str, str]:
    """{file: the key that names it} of the `retriever.eval_queries` the retriever runs that built `files`
    read; a file of no retriever run is told: its groups are checked against no evaluation question."""
    found = {}
    for file in files:
        run = Path(file).resolve().parent.parent
        built = retriever_settings(file)
        path = (built or {}).get("eval_queries")
        if built is None:
            log.warning(
                "reranker.train_file %s: not the synthetic data of a retriever run (%s), so its groups are not "
                "checked against evaluation questions; reranker.eval_queries=FILE checks them",
                file,
                not_synthetic_why(file),
            )
        elif path and path not in found:
            found[path] = f"{run / 'manifest.json'} retriever.eval_queries"
    return found
