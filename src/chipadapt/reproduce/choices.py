"""Settings a step takes from the steps before it: the learning rate of the best short DAPT run, the
density and scale of the best TIES screening job. A step with `choose` gets its extra overrides only
when its candidates are done, so its command (and the ledger's record of it) names the values chosen.

    choose:
      among: [dapt_lr5e-6, dapt_lr3e-4]   # steps; a multirun step offers each of its jobs
      where: {merge: ties}                # only jobs whose overrides say so (optional)
      by: heldout_domain_bpb              # a criterion below
      take: [optim.lr]                    # copied from the winner's .hydra/overrides.yaml
      endpoints: [eval_base, eval_sft]    # merge_balance: the instruct and the chip model's folders
      prompts_from: [screen_interp]       # merge_balance: score IFEval on these steps' prompts only (optional)
"""

import json
from dataclasses import dataclass
from pathlib import Path

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import items_file, read_items


@dataclass(frozen=True)
class Candidate:
    folder: Path
    overrides: dict[str, str]


@dataclass(frozen=True)
class Choice:
    overrides: tuple[str, ...]  # key=value, appended to the step's arguments
    winner: str  # the candidate's folder, relative to the reproduction folder
    score: float
    by: str
    scores: dict[str, float]  # every candidate's score, for the report


class NotReady(Exception):
    """A candidate step has not finished: the choice waits."""


def read_overrides(folder: Path) -> dict[str, str]:
    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    import yaml

    pairs = [str(o) for o in (yaml.safe_load(path.read_text()) or [])]
    return {k.lstrip("+~"): v for k, _, v in (p.partition("=") for p in pairs)}


def candidates(out: Path, among: list[str], done: set[str], multirun: dict[str, bool]) -> list[Candidate]:
    found = []
    for name in among:
        if name not in done:
            raise NotReady(name)
        folder = out / name
        jobs = (
            sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
            if multirun[name]
            else [folder]
        )
        found += [Candidate(job, read_overrides(job)) for job in jobs]
    return found


# --- criteria: each returns a score, higher is better -------------------------------------------


def heldout_domain_bpb(candidate: Candidate, spec: dict, out: Path) -> float:
    """A training run's held-out domain bits per byte after training (mean over the domain splits of its
    validation; the general split is left out); lower is better, so negated."""
    manifest = json.loads((candidate.folder / "manifest.json").read_text())
    after = (manifest.get("metrics") or {}).get("after") or {}
    values = [v["bpb"] for k, v in after.items() if k != "general" and isinstance(v, dict) and "bpb" in v]
    if not values:
        raise ChipadaptError(f"choose: {candidate.folder}/manifest.json has no held-out bpb after training")
    return -sum(values) / len(values)


def _items(folder: Path, task: str) -> dict[str, dict]:
    path = items_file(folder, task)
    if not path.is_file():
        raise ChipadaptError(f"choose: {path} is missing (the merge_balance criterion reads per-item records)")
    return read_items(path)


def _ratio(items: dict[str, dict], ids: list[str], metric: str) -> float:
    num = den = 0.0
    for i in ids:
        score = items[i]["scores"][metric]
        num, den = num + score["num"], den + score["den"]
    return num / den


def _domain_bpb(folder: Path) -> float:
    """corpus_ppl's domain_all.bpb (all held-out domain documents pooled; every run scores the same ones)."""
    path = folder / "results.json"
    value = (json.loads(path.read_text()) if path.is_file() else {}).get("corpus_ppl", {}).get("domain_all.bpb")
    if value is None:
        raise ChipadaptError(f"choose: {path} has no corpus_ppl.domain_all.bpb (merge_balance needs it)")
    return value


def step_prompts(out: Path, names: list[str]) -> set[str]:
    """The IFEval prompts the named steps scored (each job of a multirun step): the prompts a screening
    chose its settings on."""
    ids = set()
    for name in names:
        folder = out / name
        jobs = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
        for job in jobs or [folder]:
            path = items_file(job, "ifeval")
            ids |= set(read_items(path)) if path.is_file() else set()
    return ids


def ifeval_gap(instruct: dict[str, dict], chip: dict[str, dict]) -> float:
    """The instruct model's IFEval instruction-level (loose) score minus the chip model's, over every prompt
    both scored: the scale of merge_balance's IFEval share."""
    both = [i for i in instruct if i in chip]
    return _ratio(instruct, both, "instruction_loose") - _ratio(chip, both, "instruction_loose")


def merge_balance(candidate: Candidate, spec: dict, out: Path) -> float:
    """How much of both models a merge keeps: the share of the domain-bpb gap (instruct model -> chip
    model) it closes plus the share of the IFEval instruction-level gap (chip -> instruct) it keeps,
    halved; 1 would be the chip model's domain bpb with the instruct model's IFEval. The merge's IFEval
    is set against the chip model's on the candidate's prompts (the ends' full evaluations include
    them), or on the prompts of `prompts_from` only: a sweep evaluated on every prompt is then chosen on
    the same prompts as the screened baselines, and the other prompts stay free for the paired tests.
    The IFEval gap that scales the share is the ends' over every prompt both scored: on a screening's
    100 prompts it was 0.049 [-0.029, +0.119] against 0.074 [+0.042, +0.106] over all 541
    (experiments/LOG.md, 2026-12-05), a scale noisy enough to reach zero and turn the criterion over.
    So a share can pass 0 or 1 on the candidate's prompts; it ranks candidates all the same."""
    instruct_folder, chip_folder = (out / name for name in spec["endpoints"])
    merged, instruct, chip = (_items(f, "ifeval") for f in (candidate.folder, instruct_folder, chip_folder))
    ids = [i for i in merged if i in instruct and i in chip]
    if spec.get("prompts_from"):
        kept = step_prompts(out, spec["prompts_from"])
        ids = [i for i in ids if i in kept]
    if not ids:
        raise ChipadaptError(
            f"choose: {candidate.folder} shares no IFEval prompt with {', '.join(spec['endpoints'])}"
            + (f" among the prompts of {', '.join(spec['prompts_from'])}" if spec.get("prompts_from") else "")
        )
    shares = []
    m, a, c = (_domain_bpb(f) for f in (candidate.folder, instruct_folder, chip_folder))
    # lower is better: the share of the way from the instruct model's to the chip model's
    shares.append((a - m) / (a - c) if abs(a - c) > 1e-12 else 0.0)  # ends that tie cannot rank
    gap = ifeval_gap(instruct, chip)
    # higher is better: the share of the way from the chip model's back to the instruct model's
    m, c = _ratio(merged, ids, "instruction_loose"), _ratio(chip, ids, "instruction_loose")
    shares.append((m - c) / gap if abs(gap) > 1e-12 else 0.0)
    return sum(shares) / 2


CRITERIA = {"heldout_domain_bpb": heldout_domain_bpb, "merge_balance": merge_balance}


def choose(spec: dict, out: Path, done: set[str], multirun: dict[str, bool]) -> Choice:
    """The winner among the candidates (raises NotReady while one is not done)."""
    by = spec["by"]
    if by not in CRITERIA:
        raise ChipadaptError(f"choose.by: {by!r} is not one of {', '.join(CRITERIA)}")
    for name in [*(spec.get("endpoints") or []), *(spec.get("prompts_from") or [])]:
        if name not in done:
            raise NotReady(name)
    where = spec.get("where") or {}
    pool = [
        c
        for c in candidates(out, list(spec["among"]), done, multirun)
        if all(c.overrides.get(k) == str(v) for k, v in where.items())
    ]
    if not pool:
        raise ChipadaptError(f"choose: no finished job among {list(spec['among'])} matches {where}")
    scores = {str(c.folder.relative_to(out)): CRITERIA[by](c, spec, out) for c in pool}
    best = max(pool, key=lambda c: scores[str(c.folder.relative_to(out))])
    missing = [k for k in spec["take"] if k not in best.overrides]
    if missing:
        raise ChipadaptError(f"choose.take: {best.folder} was not run with {missing[0]}=... (its overrides.yaml)")
    return Choice(
        overrides=tuple(f"{k}={best.overrides[k]}" for k in spec["take"]),
        winner=str(best.folder.relative_to(out)),
        score=scores[str(best.folder.relative_to(out))],
        by=by,
        scores=scores,
    )
