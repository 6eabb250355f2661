"""The causal LM of synthetic retriever data: the prompts it writes questions and judges passages from, and
the check that keeps a generated reply only where it is a plausible question."""

import re

from rich.progress import track

from chipadapt.models.text_generation import generate
from chipadapt.report import while_running
from chipadapt.retrieval.passages import Passage

QUESTION_PROMPT = (
    "Here is a passage from chip design tool documentation.\n\n{passage}\n\n"
    "Write one short question that an engineer might ask and that this passage answers. "
    "Reply with the question only."
)
HOWTO_PROMPT = (
    "Here is a passage from chip design tool documentation.\n\n{passage}\n\n"
    "Write one short question that starts with 'How do I' and that this passage answers. "
    "Reply with the question only."
)
JUDGE_PROMPT = "Passage:\n{passage}\n\nQuestion: {question}\n\nDoes the passage answer the question? Reply Yes or No."


def clean_question(text: str, starts_with: str = "") -> str | None:
    """First line of a generated reply, if it is a plausible question (opening with `starts_with`)."""
    line = next((row.strip() for row in text.splitlines() if row.strip()), "")
    line = re.sub(r"^(question|q)\s*[:.]\s*", "", line, flags=re.I).strip(" \"'")
    if "?" in line:
        line = line[: line.index("?") + 1]
    words = len(line.split())
    if starts_with and not line.lower().startswith(starts_with):
        return None
    return line if line.endswith("?") and 4 <= words <= 40 else None


class LLMHelper:
    """The causal LM that writes questions and judges passages (any model folder of this project)."""

    def __init__(self, model, tokenizer, batch_size: int, max_new_tokens: int, passage_chars: int):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_new_tokens, self.passage_chars = batch_size, max_new_tokens, passage_chars

    def write_questions(
        self, passages: list[Passage], prompt: str = QUESTION_PROMPT, starts_with: str = ""
    ) -> list[str | None]:
        prompts = [prompt.format(passage=p.text[: self.passage_chars]) for p in passages]
        out = []
        for start in track(range(0, len(prompts), self.batch_size), description="writing questions", **while_running()):
            out += generate(
                self.model,
                self.tokenizer,
                prompts[start : start + self.batch_size],
                self.batch_size,
                self.max_new_tokens,
                chat=True,
            )
        return [clean_question(text, starts_with) for text in out]

    def yes_scores(self, pairs: list[tuple[str, Passage]]) -> list[float]:
        """log P(Yes) - log P(No) as the reply to the judge prompt, one forward pass per batch."""
        tok = self.tokenizer
        yes_id = tok("Yes", add_special_tokens=False).input_ids[0]
        no_id = tok("No", add_special_tokens=False).input_ids[0]
        prompts = []
        for question, passage in pairs:
            prompt = JUDGE_PROMPT.format(passage=passage.text[: self.passage_chars], question=question)
            if tok.chat_template:
                prompt = tok.apply_chat_template(
                    [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
                )
            prompts.append(prompt)
        tok.padding_side = "left"  # the last position is then every row's next token
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        scores = []
        for start in track(
            range(0, len(prompts), self.batch_size), description="judging candidates", **while_running()
        ):
            enc = tok(
                prompts[start : start + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.model.device)
            last = self.model(**enc).logits[:, -1].float().log_softmax(-1)
            scores += (last[:, yes_id] - last[:, no_id]).tolist()
        return scores
