"""How the replies sampled under each attribute setting of a bootstrap round were rated: the mean
rating of each attribute with its 95% interval, and each setting against the first on the same prompts.

The prompts are the independent draws: the replies to one prompt share it, so the interval is the
bootstrap over prompts of the mean of each prompt's mean rating (every prompt has `samples_per_setting`
replies under each setting, so that is the mean over the replies); where every prompt's mean is the
same there is no spread, and `ci_method` says so (steerlm/rating_intervals.py). Every setting
answered every prompt, so two settings are compared paired on the prompts (eval/paired.py: the exact
permutation test up to 16 prompts, the paired bootstrap above; no test where every difference is 0),
which a comparison of the two intervals is not."""

import numpy as np

from chipadapt.steerlm.rating_intervals import mean_with_interval, paired_difference


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
    attribute model does not rate), `mean_rating_ci`, `ci_method` ({attribute: how that interval was
    made}), and from the second setting on `minus_first`: {attribute: this setting's mean minus the
    first's, paired over the prompts}."""
    parts = {}  # (setting, attribute) -> per-prompt mean ratings
    out = []
    for si, setting in enumerate(settings):
        mine = [i for i, s in enumerate(setting_of) if s == si]
        entry = {"setting": setting, "replies": len(mine), "mean_rating": {}, "mean_rating_ci": {}, "ci_method": {}}
        for a in attributes:
            figure = None
            if a in rated and mine:
                means = _per_prompt([ratings[i] for i in mine], [prompt_of[i] for i in mine], n_prompts, a)
                parts[si, a] = means
                figure = mean_with_interval(means.tolist(), "prompt")
            entry["mean_rating"][a] = figure["mean"] if figure else None
            entry["mean_rating_ci"][a] = figure["ci"] if figure else None
            entry["ci_method"][a] = figure["ci_method"] if figure else None
        if si:
            entry["minus_first"] = {}
            for a in rated:
                if (0, a) not in parts or (si, a) not in parts:
                    continue
                first, this = parts[0, a], parts[si, a]
                both = ~np.isnan(first) & ~np.isnan(this)
                entry["minus_first"][a] = paired_difference(first[both], this[both])
        out.append(entry)
    return out
