"""MCQ subjects: picking them by name (lm-eval's `--tasks mmlu_<subject>`) and scoring each, and each
category of them, on its own (lm-eval's per-subject rows and its mmlu_stem ... groups).

A group's score is the micro average over its items (every question weighs the same), as lm-eval 0.4.13's
MMLU groups (`aggregate_metric_list: [{metric: acc, weight_by_size: true}]`), with the same interval as the
overall score (eval/intervals.py, from the group's items). A subject's category is the record's `category`
where every record gives one, else MMLU's standard one (MMLU_CATEGORIES) where every subject is MMLU's.
"""

import difflib

from chipadapt.errors import ChipadaptError
from chipadapt.eval.items import summarize

# lm-evaluation-harness 0.4.13, lm_eval/tasks/mmlu/_generate_configs.py (SUBJECTS): MMLU's subject -> group.
MMLU_CATEGORIES = {
    "abstract_algebra": "stem",
    "anatomy": "stem",
    "astronomy": "stem",
    "business_ethics": "other",
    "clinical_knowledge": "other",
    "college_biology": "stem",
    "college_chemistry": "stem",
    "college_computer_science": "stem",
    "college_mathematics": "stem",
    "college_medicine": "other",
    "college_physics": "stem",
    "computer_security": "stem",
    "conceptual_physics": "stem",
    "econometrics": "social_sciences",
    "electrical_engineering": "stem",
    "elementary_mathematics": "stem",
    "formal_logic": "humanities",
    "global_facts": "other",
    "high_school_biology": "stem",
    "high_school_chemistry": "stem",
    "high_school_computer_science": "stem",
    "high_school_european_history": "humanities",
    "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences",
    "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem",
    "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem",
    "high_school_psychology": "social_sciences",
    "high_school_statistics": "stem",
    "high_school_us_history": "humanities",
    "high_school_world_history": "humanities",
    "human_aging": "other",
    "human_sexuality": "social_sciences",
    "international_law": "humanities",
    "jurisprudence": "humanities",
    "logical_fallacies": "humanities",
    "machine_learning": "stem",
    "management": "other",
    "marketing": "other",
    "medical_genetics": "other",
    "miscellaneous": "other",
    "moral_disputes": "humanities",
    "moral_scenarios": "humanities",
    "nutrition": "other",
    "philosophy": "humanities",
    "prehistory": "humanities",
    "professional_accounting": "other",
    "professional_law": "humanities",
    "professional_medicine": "other",
    "professional_psychology": "social_sciences",
    "public_relations": "social_sciences",
    "security_studies": "social_sciences",
    "sociology": "social_sciences",
    "us_foreign_policy": "social_sciences",
    "virology": "other",
    "world_religions": "humanities",
}
NEAREST = 3  # names suggested for a subject the file does not have


def subject_names(subjects, key: str) -> list[str] | None:
    """`eval.mcq.subjects` as a list of names (one name given as text is a list of one); None: all."""
    if subjects is None:
        return None
    names = [subjects] if isinstance(subjects, str) else list(subjects)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ChipadaptError(f"{key}: {subjects!r} is not a list of subject names (null: every subject)")
    return list(dict.fromkeys(names))


def select_subjects(rows: list[dict], names: list[str] | None, path, key: str) -> list[dict]:
    """The rows of the subjects `names` (file order kept); every row where `names` is None. A name the file
    has no row of is refused, with the file's nearest subject names."""
    if names is None:
        return rows
    present = sorted({r["subject"] for r in rows if isinstance(r.get("subject"), str)})
    if not present:
        raise ChipadaptError(f"{key}: {path} names no subject in its records (no `subject` field)")
    unknown = [n for n in names if n not in present]
    if unknown:
        said = "; ".join(
            f"{n!r} (nearest: {', '.join(difflib.get_close_matches(n, present, NEAREST, 0.4)) or 'none'})"
            for n in unknown
        )
        raise ChipadaptError(f"{key}: not a subject of {path}: {said}; it has {len(present)} subjects")
    wanted = set(names)
    return [r for r in rows if r.get("subject") in wanted]


def category_of(rows: list[dict]) -> dict[str, str] | None:
    """{subject: category}: the records' own `category` where every record gives one (and one per subject),
    else MMLU's where every subject is one of MMLU's; None where neither applies."""
    subjects = {r.get("subject") for r in rows}
    if not all(isinstance(s, str) for s in subjects):
        return None
    if all(isinstance(r.get("category"), str) for r in rows):
        given = {(r["subject"], r["category"]) for r in rows}
        if len(given) == len(subjects):
            return dict(given)
        return None  # a subject filed under two categories: no grouping to report
    if subjects <= MMLU_CATEGORIES.keys():
        return {s: MMLU_CATEGORIES[s] for s in subjects}
    return None


def _group_scores(items: list[dict], groups: list[str | None]) -> dict[str, dict]:
    members: dict[str, list[dict]] = {}
    for item, group in zip(items, groups):
        members.setdefault(group, []).append(item)
    return {group: summarize(members[group]) for group in sorted(members)}


def scores_by_group(items: list[dict], rows: list[dict]) -> dict[str, dict]:
    """`by_subject` ({subject: metrics with interval and n}) where every row names a subject, and
    `by_category` ({category: the same, and its `subjects`}) where `category_of` gives one; {} where not."""
    subjects = [r.get("subject") for r in rows]
    if not all(isinstance(s, str) for s in subjects):
        return {}
    out = {"by_subject": _group_scores(items, subjects)}
    categories = category_of(rows)
    if categories is not None:
        by_category = _group_scores(items, [categories[s] for s in subjects])
        for category, metrics in by_category.items():
            metrics["subjects"] = sum(1 for s in set(subjects) if categories[s] == category)
        out["by_category"] = by_category
    return out
