"""Accuracies a multiple-choice set gives away without reading the question.

Reported beside a model's score so that a score can be read against what guessing earns: `chance`
(pick uniformly) and `longest` (pick the longest choice; hand-written sets often make the right answer
the longest and most qualified one, which length-normalised cloze scoring then rewards).
"""


def chance_baseline(rows: list[dict]) -> float:
    """Expected accuracy of a uniform guess: the mean of 1/k over questions with k choices."""
    return sum(1 / len(row["choices"]) for row in rows) / max(len(rows), 1)


def longest_choice_baseline(rows: list[dict]) -> float:
    """Expected accuracy of picking the longest choice (in characters), ties broken uniformly at random."""
    total = 0.0
    for row in rows:
        lengths = [len(str(choice)) for choice in row["choices"]]
        longest = max(lengths)
        if lengths[int(row["answer"])] == longest:
            total += 1 / lengths.count(longest)
    return total / max(len(rows), 1)
