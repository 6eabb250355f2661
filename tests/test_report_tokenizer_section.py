"""The reproduction report's tokenizer section measures the held-out saving with the tokenizer step's own
helper (one copy, imported downward from the feature), and prints what it printed with its former copy."""

import random

from chipadapt.reproduce.report import tokenizer_section
from chipadapt.tokenizer import held_out


def test_the_report_uses_the_tokenizer_steps_token_ratio():
    assert tokenizer_section.token_ratio is held_out.token_ratio


def test_the_reports_saving_text_is_unchanged():
    rng = random.Random(0)
    before = [rng.randint(50, 500) for _ in range(60)]
    after = [round(n * rng.uniform(0.93, 0.97)) for n in before]

    def text(n: int) -> str:
        return tokenizer_section.saving_text(
            {"reduction_pct": 0.0, "paired": tokenizer_section.token_ratio(before[:n], after[:n])}
        )

    # As the report's own copy printed them: random swaps over 60 documents (the paired bootstrap before
    # them gave [4.69, 5.33]), exact test over 12; over 5 the exact test's interval is unbounded, said in
    # words (it printed `[-inf, inf]`).
    assert [text(60), text(12), text(5)] == [
        "5.02% [4.69, 5.37]",
        "4.59% [3.94, 5.34]",
        "4.33% (interval n/a: n=5, too few)",
    ]
    assert tokenizer_section.saving_text({"reduction_pct": 1.5, "paired": held_out.token_ratio([], [])}) == "1.50%"
