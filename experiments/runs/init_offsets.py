"""Starting-model bpb of an augmented SmolLM2 under new-row inits the stage does not offer (issue 20).

  python experiments/runs/init_offsets.py AUGMENTED_FOLDER [BASE_FOLDER]

AUGMENTED_FOLDER is a `stage=tokenizer` build in $CHIPADAPT_CACHE/models (its tokenizer is used; its
weights are not). Scores, on the excerpts `tokenizer.adapt.starting_bpb` uses (data=shared_corpus,
2% held out, 4,000 characters per source, 512-token window), the base model with the base tokenizer,
then the resized model with these output rows for the new tokens:
- `mean` (the stage's default) and `mean` shifted by a constant logit offset a;
- `first`: the first base piece's output row, shifted by a (the new token inherits its first piece's
  logit, discounted by a for the pieces after it).
An offset of a nats is added as a * hbar / |hbar|^2, hbar being the mean final hidden state over the
domain excerpts: every hidden state's projection on it is close to 1, so the logit moves by about a.
Prints each rule's domain and general bpb minus the base tokenizer's (mean over sources, stderr).
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from chipadapt.data.sources import SourceSpec
from chipadapt.io.cache_root import cache_root
from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer
from chipadapt.tokenizer.extend import padded_size, piece_ids, resize_for_new_tokens
from chipadapt.tokenizer.starting_bpb import StartingBpb

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
DOMAIN = ["openroad", "orfs", "ibex", "opentitan", "yosys", "picorv32"]


@torch.no_grad()
def mean_final_hidden(model, tokenizer, texts: list[str], max_length: int) -> torch.Tensor:
    states = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_length]
        states.append(model(ids, output_hidden_states=True).hidden_states[-1][0])  # after the final norm
    return torch.cat(states).mean(dim=0)


def main() -> None:
    augmented = Path(sys.argv[1])
    base_folder = (
        Path(sys.argv[2]) if len(sys.argv) > 2 else cache_root() / "models" / augmented.name.split("--augmented-")[0]
    )
    domain = {n: SourceSpec(path=str(SHARED / "corpus" / f"{n}.jsonl")) for n in DOMAIN}
    general = {"general": SourceSpec(path=str(SHARED / "general" / "wikitext2_raw_test_docs_detok.jsonl"))}
    # One block per 4,000-character excerpt: the ruler of the session this script was written for.
    measure = StartingBpb(
        outputs=[],
        held_out=0.02,
        domain_chars=4000,
        general_chars=4000,
        block_chars=4000,
        max_length=512,
        warmup_steps=[],
    )
    with tempfile.TemporaryDirectory() as work:
        task = measure.task(domain, general, Path(work))
        domain_texts = [line for f in sorted(Path(work).glob("domain-*.jsonl")) for line in f.read_text().splitlines()]
        tokenizer, new_tokenizer = load_tokenizer(base_folder), load_tokenizer(augmented)
        model = load_causal_lm(base_folder, "float32", "sdpa")
        base = task.measure(model, tokenizer)  # the base first: later models pair with it
        print(f"base tokenizer: domain {base['domain_bpb']:.4f} bpb, general {base['general_bpb']:.4f}", flush=True)
        hbar = mean_final_hidden(model, tokenizer, [json.loads(t)["text"] for t in domain_texts], 512)
        offset = hbar / hbar.dot(hbar)
        old_rows = len(tokenizer)
        vocab = new_tokenizer.backend_tokenizer.get_vocab()
        new_tokens = sorted((t for t, i in vocab.items() if i >= old_rows), key=vocab.get)
        new_ids = [vocab[t] for t in new_tokens]
        pieces = piece_ids(tokenizer.backend_tokenizer, new_tokens)
        resize_for_new_tokens(
            model, pieces, new_ids, padded_size(len(new_tokenizer)), input_rule="mean", output_rule="mean"
        )
        head = model.get_output_embeddings().weight
        old_out = head[:old_rows].detach().clone()
        rules = {"mean": torch.stack([old_out[p].mean(0) for p in pieces])}
        rules["first"] = torch.stack([old_out[p[0]] for p in pieces])
        print(f"{len(new_tokens)} new tokens; input rows: mean of pieces", flush=True)
        for name, shifts in (("mean", [0.0, -0.5, -1.0, -2.0, -3.0, 1.0]), ("first", [0.0, -1.0, -2.0, -3.0])):
            for a in shifts:
                with torch.no_grad():
                    head[new_ids] = rules[name] + a * offset
                start = time.perf_counter()
                s = task.measure(model, new_tokenizer)
                print(
                    f"output={name:5s} offset {a:+.1f} nats: domain {s['domain_minus_base']:+.4f} "
                    f"± {s['domain_minus_base_stderr']:.4f}, general {s['general_minus_base']:+.4f} "
                    f"({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
