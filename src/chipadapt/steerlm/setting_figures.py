"""How the replies sampled under each attribute setting of a bootstrap round were rated: the mean
rating of each attribute with its 95% interval, and each setting against the first on the same prompts.

The prompts are the independent draws: the replies to one prompt share it, so the interval is the
bootstrap over prompts of the mean of each prompt's mean rating (every prompt has `samples_per_setting`
replies under each setting, so that is the mean over the replies). Every setting answered every prompt,
so two settings are compared paired on the prompts (eval/paired.py: the exact permutation test up to 16
prompts, the paired bootstrap above), which a comparison of the two intervals is not."""

import numpy as np

from chipadapt.eval.intervals import ratio
from chipadapt.eval.items import metric_fields
from chipadapt.eval.paired import paired_bootstrap


def _per_prompt(ratings: list[dict], prompt_of: list[int], n_prompts: int, attribute: str) -> np.ndarray:
    """Per prompt, the mean of the attribute's ratings of its replies (NaN for a prompt with none)."""
    sums, counts = np.zeros(n_prompts), np.zeros(n_prompts)
    for rating, prompt in zip(ratings, prompt_of):
        sums[prompt] += rating[attribute]
        counts[prompt] += 1
    with np.errstate(invalid="ignore"):
        return sums / counts


def by_setting(
    settings: list[dict],
    ratings: list[dict],
    setting_of: list[int],
    prompt_of: list[int],
    n_prompts: int,
    attributes: list[str],
    rated: list[str],
) -> list[dict]:
    """One entry per setting: its replies, `mean_rating` ({attribute: mean}, None for an attribute the
    attribute model does not rate), `mean_rating_ci`, and from the second setting on `minus_first`:
    {attribute: this setting's mean minus the first's, paired over the prompts}."""
    parts = {}  # (setting, attribute) -> per-prompt mean ratings
    out = []
    for si, setting in enumerate(settings):
        mine = [i for i, s in enumerate(setting_of) if s == si]
        entry = {"setting": setting, "replies": len(mine), "mean_rating": {}, "mean_rating_ci": {}}
        for a in attributes:
            if a not in rated or not mine:
                entry["mean_rating"][a], entry["mean_rating_ci"][a] = None, None
                continue
            means = _per_prompt([ratings[i] for i in mine], [prompt_of[i] for i in mine], n_prompts, a)
            parts[si, a] = means
            fields = metric_fields("m", ratio(means[~np.isnan(means)].tolist()))
            entry["mean_rating"][a], entry["mean_rating_ci"][a] = fields["m"], fields["m_ci"]
        entry["ci_method"] = "bootstrap over prompts (the mean of each prompt's mean rating)"
        if si:
            entry["minus_first"] = {}
            for a in rated:
                if (0, a) not in parts or (si, a) not in parts:
                    continue
                first, this = parts[0, a], parts[si, a]
                both = ~np.isnan(first) & ~np.isnan(this)
                ones = np.ones(int(both.sum()))
                d = paired_bootstrap(first[both], ones, this[both], ones)
                entry["minus_first"][a] = {
                    "difference": d.diff,
                    "ci": list(d.ci),
                    "p": d.p,
                    "n": d.n,  # prompts both settings answered
                    "test": d.test,
                    "verdict": d.verdict,
                }
        out.append(entry)
    return out
