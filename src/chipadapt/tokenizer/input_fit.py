"""`tokenizer.adapt.init.input_fit`: the new tokens' INPUT rows taught to give the hidden states the
base tokenization gives.

A new token stands for a run of base pieces. The model never saw it, and the static input row (the
pieces' mean) loses their order, so the text after it is read from a hidden state the model has not
learned to use: the starting model pays on the positions after a new token as well as on the new
token itself (experiments/LOG.md, 2026-12-05 session 12: half of the extra bits/byte on opentitan's
held-out text, four fifths on picorv32's). The augmented tokenization only merges runs of base
tokens, so every token end of it is also a token end of the base tokenization of the same text, and
there the model, fed the base tokens, already computes the hidden state it should have. This is the
distillation idea of Dobler et al. 2025 ("Token Distillation: Attention-aware Input Embeddings for
New Tokens") on the final hidden states:
- windows of domain training text (never the held-out documents), encoded both ways; the targets are
  the model's final hidden states (after the last norm: what the output rows multiply) on the base
  tokens, which the new rows cannot change;
- loss: the mean squared distance between the two, at every shared token end from the window's first
  new token on (before it the two inputs are the same);
- Adam on the new input rows alone, at a constant rate, for `epochs` passes over the windows. The
  gradient is masked to the new rows, so every base row stays as it was (checked bit-identical), and
  so do the rows of new tokens the sample lacks; a row moves from the first step whose windows hold
  its token, and by momentum after that (as in the warm-up).
Output rows are left to `init.fit`, which runs after this on the hidden states this gives.
"""

import logging
import random
import time
from collections import Counter

import torch
from tqdm.auto import tqdm

from chipadapt.errors import ChipadaptError
from chipadapt.tokenizer.windows import training_texts

log = logging.getLogger(__name__)

# Characters of text taken per window before it is cut to `seq_len` base tokens (code and prose
# average well under 4 characters per token, so the cut, not this, sets a window's length).
CHARS_PER_TOKEN = 6
# Draws per window before giving up on finding text with a new token in it.
TRIES = 50


class InputRowFit:
    def __init__(self, windows: int, seq_len: int, epochs: int, batch_size: int, lr: float, held_out, seed: int):
        if windows < 1 or seq_len < 2 or epochs < 1 or batch_size < 1 or lr <= 0:
            raise ChipadaptError(
                f"tokenizer.adapt.init.input_fit: windows={windows}, epochs={epochs} and batch_size={batch_size} "
                f"must be >= 1, seq_len={seq_len} >= 2, lr={lr} > 0 (input_fit=null: no fit)"
            )
        self.windows, self.seq_len, self.epochs, self.batch_size, self.lr = windows, seq_len, epochs, batch_size, lr
        self.held_out, self.seed = held_out, seed

    def settings(self) -> dict:
        # The module constants shape the fitted rows too, so a build made with other values is not reused.
        return dict(vars(self)) | {"chars_per_token": CHARS_PER_TOKEN, "tries": TRIES}

    def _pairs(self, base, extended, text: str, is_new) -> tuple[list[int], list[int], list[int], list[int]] | None:
        """Both encodings of `text` cut to at most `seq_len` base tokens, and the aligned positions from
        the first new token on (augmented index, base index); None without a new token."""
        base_enc = base.encode(text, add_special_tokens=False)
        ends = [end for _, end in base_enc.offsets]
        n = min(self.seq_len, len(ends))
        # Never cut inside a character: its byte pieces all end where the character does.
        while 0 < n < len(ends) and ends[n - 1] == ends[n]:
            n -= 1
        if n < 2:
            return None
        base_ids, base_ends = base_enc.ids[:n], ends[:n]
        aug_enc = extended.encode(text[: base_ends[-1]], add_special_tokens=False)
        aug_ids, aug_ends = aug_enc.ids, [end for _, end in aug_enc.offsets]
        first = next((i for i, t in enumerate(aug_ids) if is_new[t]), None)
        if first is None:
            return None
        # Only ends that one token of each encoding has: byte pieces of one character share its end,
        # and there the same end is not the same text.
        single = [{e for e, c in Counter(found).items() if c == 1} for found in (base_ends, aug_ends)]
        where = {e: j for j, e in enumerate(base_ends) if e in single[0] and e in single[1]}
        aligned = [(i, where[e]) for i, e in enumerate(aug_ends) if i >= first and e in where]
        if not aligned:
            return None
        return base_ids, aug_ids, [i for i, _ in aligned], [j for _, j in aligned]

    def _sample(self, base, extended, domain: dict[str, list], is_new, validation: list | None) -> list[tuple]:
        texts = training_texts(domain, self.held_out, validation=validation)
        if not texts:
            raise ChipadaptError("tokenizer.adapt.init.input_fit: no domain training document to draw windows from")
        rng = random.Random(self.seed)
        names, chars = sorted(texts), self.seq_len * CHARS_PER_TOKEN
        weights = {n: [len(t) for t in texts[n]] for n in names}
        out = []
        for k in range(self.windows):
            name = names[k % len(names)]  # sources in turn, as the starting bits/byte average them
            for _ in range(TRIES):
                doc = rng.choices(texts[name], weights=weights[name])[0]
                begin = rng.randrange(max(1, len(doc) - chars))
                if (pair := self._pairs(base, extended, doc[begin : begin + chars], is_new)) is not None:
                    out.append(pair)
                    break
        if not out:
            raise ChipadaptError(
                "tokenizer.adapt.init.input_fit: no window of the domain training text holds a new token"
            )
        return out

    def run(
        self, model, base, extended, domain: dict[str, list], new_ids: list[int], validation: list | None = None
    ) -> dict | None:
        """Fit the new input rows of `model` in place. `base`/`extended`: the base and the extended
        `tokenizers.Tokenizer`; `domain`: documents per domain source. Returns what the report records
        (None without new tokens: nothing to fit)."""
        start = time.perf_counter()
        if not new_ids:
            log.info("input fit: no new tokens, nothing to fit")
            return None
        embed = model.get_input_embeddings().weight
        if embed is model.get_output_embeddings().weight:
            raise ChipadaptError(
                "tokenizer.adapt.init.input_fit needs untied embeddings (resize_for_new_tokens unties them)"
            )
        is_new = [False] * embed.shape[0]
        for t in new_ids:
            is_new[t] = True
        samples = self._sample(base, extended, domain, is_new, validation)
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        device = embed.device
        old = embed.detach().clone()
        new_mask = torch.zeros(embed.shape[0], 1, dtype=torch.bool, device=device)
        new_mask[new_ids] = True
        was_training, embed_grad = model.training, embed.requires_grad
        frozen = [p for p in model.parameters() if p is not embed and p.requires_grad]
        hook, epoch_loss = None, []
        bar = tqdm(total=self.epochs * len(samples), desc="input fit", unit="window", mininterval=2)
        try:
            model.eval()
            with torch.no_grad():  # the targets: the base tokens' hidden states, which no new row changes
                targets = [
                    decoder(input_ids=torch.tensor([b], device=device), use_cache=False).last_hidden_state[0, j].float()
                    for b, _, _, j in samples
                ]
            for p in frozen:
                p.requires_grad_(False)
            embed.requires_grad_(True)
            embed.grad = None
            # A base row never gets a gradient, so Adam's moments for it stay zero and it never moves (checked
            # below). A new row moves from the first step whose windows hold its token on, by momentum after
            # that, as in the warm-up; rows of tokens the sample lacks never move.
            hook = embed.register_hook(lambda grad: torch.where(new_mask, grad, 0.0))
            optimizer = torch.optim.Adam([embed], lr=self.lr, weight_decay=0.0)
            rng, order = random.Random(self.seed + 1), list(range(len(samples)))
            for epoch in range(self.epochs):
                rng.shuffle(order)
                total = 0.0
                for k in range(0, len(order), self.batch_size):
                    group = order[k : k + self.batch_size]
                    for w in group:
                        _, aug_ids, at, _ = samples[w]
                        hidden = decoder(input_ids=torch.tensor([aug_ids], device=device), use_cache=False)
                        distance = (hidden.last_hidden_state[0, at].float() - targets[w]).pow(2).sum(-1).mean()
                        (distance / len(group)).backward()
                        total += float(distance.detach())
                        bar.update(1)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                epoch_loss.append(total / len(order))
                log.info("input fit epoch %d/%d: mean squared distance %.3f", epoch + 1, self.epochs, epoch_loss[-1])
        finally:
            bar.close()
            if hook is not None:
                hook.remove()
            for p in frozen:
                p.requires_grad_(True)
            embed.requires_grad_(embed_grad)
            model.train(was_training)
        keep = ~new_mask[:, 0]
        if not torch.equal(embed.detach()[keep], old[keep]):
            raise RuntimeError("tokenizer input fit changed a base-vocabulary row")  # a bug, not bad input
        seen = sorted({t for _, aug_ids, _, _ in samples for t in aug_ids if is_new[t]})
        change = (embed.detach()[seen] - old[seen]).pow(2).sum(-1)
        return {
            **self.settings(),
            "windows_used": len(samples),
            "aligned_positions": sum(len(s[2]) for s in samples),
            "new_tokens_seen": len(seen),
            # per epoch: the mean over windows of a window's mean squared distance per aligned position
            "epoch_loss": [round(x, 3) for x in epoch_loss],
            "rms_change": round(float(change.mean().sqrt()), 5),  # of the rows of tokens the sample holds
            "seconds": round(time.perf_counter() - start, 1),
        }
