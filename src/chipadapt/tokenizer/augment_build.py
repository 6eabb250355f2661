"""The build behind `tokenizer=augmented` (augment.py lists its steps): train the domain tokenizer,
choose its new tokens and check them, resize the model and fit the new rows, measure the starting
model's bits per byte, and write the folder with its tokenizer_report.json. It is DomainTokenizer's
base class: the build reads the settings, sources and init parts that DomainTokenizer.__init__ sets
(settings, domain, general_train, report_general, warmup, input_fit, fit, starting_bpb)."""

import logging
import tempfile
import time
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer

from chipadapt.data.sources import read_source
from chipadapt.errors import ChipadaptError
from chipadapt.io import strict_json
from chipadapt.io.atomic import atomic_directory
from chipadapt.models.hf_folder import TOKENIZER_REPORT_NAME, load_causal_lm, load_tokenizer
from chipadapt.models.portable_folder import make_portable
from chipadapt.report import console
from chipadapt.tokenizer.extend import (
    padded_size,
    piece_ids,
    resize_for_new_tokens,
    set_output_rows,
)
from chipadapt.tokenizer.extension_checks import check_round_trip, check_specials
from chipadapt.tokenizer.family import tokenizer_family
from chipadapt.tokenizer.held_out import held_out_rows, split_documents, without_held_copies
from chipadapt.tokenizer.produced import choose_produced
from chipadapt.tokenizer.report import (
    efficiency_rows,
    held_out_text,
    most_useful_tokens,
    reduction_table,
    starting_bpb_table,
)
from chipadapt.tokenizer.words import word_counts

log = logging.getLogger(__name__)

REPORT_NAME = TOKENIZER_REPORT_NAME


def print_report(report: dict) -> None:
    console.print(reduction_table(report))
    if (table := starting_bpb_table(report)) is not None:
        console.print(table)


class AugmentedBuild:
    """DomainTokenizer's build, on the attributes its __init__ sets (this module's docstring names them)."""

    def _build(self, base_folder: Path, folder: Path) -> Path:
        start = time.perf_counter()
        tokenizer = load_tokenizer(base_folder)
        base = getattr(tokenizer, "backend_tokenizer", None)
        if base is None:
            raise ChipadaptError(f"tokenizer=augmented: {base_folder} has no `tokenizers` (fast) tokenizer to extend")
        family = tokenizer_family(base, f"tokenizer=augmented ({base_folder.name})")
        domain_docs = {n: read_source(s, f"data.sources.{n}") for n, s in self.domain.items()}
        domain_texts = [d.text for docs in domain_docs.values() for d in docs]
        split = {n: split_documents(docs, self.domain[n], self.settings["held_out"]) for n, docs in domain_docs.items()}
        split, copies = without_held_copies(split)
        selection_docs = {n: train for n, (train, _) in split.items() if train}
        held_docs = {n: held for n, (_, held) in split.items() if held}

        log.info(
            "training a %d-entry %s domain tokenizer on %d documents (%d held out, as DAPT holds them out) ...",
            self.settings["domain_vocab_size"],
            family.name,
            sum(len(docs) for docs in selection_docs.values()),
            sum(len(docs) for docs in held_docs.values()),
        )
        domain_vocab = family.train_domain_vocab(
            [d.text for docs in selection_docs.values() for d in docs], self.settings["domain_vocab_size"]
        )
        domain_counts = {n: word_counts(family, (d.text for d in docs)) for n, docs in selection_docs.items()}
        all_domain = sum(domain_counts.values(), start=Counter())
        filter_specs = self.general_train or self.report_general
        if not self.general_train:
            log.warning("no training source is marked general: filtering new tokens on the report's general text")
        filter_docs = [d.text for n, s in filter_specs.items() for d in read_source(s, f"tokenizer.adapt.{n}")]
        filter_counts = word_counts(family, filter_docs)

        _, extended_json, new_tokens, dropped = choose_produced(
            base,
            all_domain,
            dict(
                domain_vocab=domain_vocab,
                general_counts=filter_counts,
                max_new_tokens=self.settings["max_new_tokens"],
                max_general_per_million=self.settings["max_general_per_million"],
                min_savings=self.settings["min_savings"],
                max_pieces=self.settings["max_pieces"],
            ),
        )
        extended = Tokenizer.from_str(extended_json)
        general_docs = {n: read_source(s, f"data.val_sources.{n}") for n, s in self.report_general.items()}
        check_round_trip(base, extended, domain_texts, "domain")
        check_round_trip(
            base,
            extended,
            filter_docs + [d.text for docs in general_docs.values() for d in docs],
            "general",
            not_longer=True,
        )
        general_counts = {n: word_counts(family, (d.text for d in docs)) for n, docs in general_docs.items()}
        chars = {n: sum(len(d.text) for d in docs) for n, docs in {**selection_docs, **general_docs}.items()}
        with atomic_directory(folder) as tmp:
            tokenizer.save_pretrained(tmp)
            (tmp / "tokenizer.json").write_text(extended_json, encoding="utf-8")
            # The extension lives in tokenizer.json only; a SentencePiece tokenizer.model left beside
            # it would give a slow tokenizer the base vocabulary, which decodes new ids wrongly.
            (tmp / "tokenizer.model").unlink(missing_ok=True)
            new_tokenizer = load_tokenizer(tmp)
            check_specials(tokenizer, new_tokenizer, len(new_tokens))
            model = load_causal_lm(base_folder, "float32", "sdpa")
            new_ids = [extended.token_to_id(t) for t in new_tokens]
            rows = padded_size(len(new_tokenizer))
            pieces = piece_ids(base, new_tokens)
            measuring = time.perf_counter()
            with tempfile.TemporaryDirectory() as excerpts:
                task = (
                    self.starting_bpb.task(self.domain, self.report_general, Path(excerpts))
                    if self.starting_bpb
                    else None
                )
                base_bpb = task.measure(model, tokenizer) if task else None
                init = self.settings["init"]
                resize = resize_for_new_tokens(
                    model, pieces, new_ids, rows, input_rule=init["input"], output_rule=init["output"]
                )
                starting = self._bpb_per_output_rule(
                    task, model, new_tokenizer, pieces, new_ids, resize["old_rows"], base_bpb
                )
                # The training text both the warm-up and the fit draw windows from, read once.
                general_train = (
                    {n: read_source(s, f"data.sources.{n}") for n, s in self.general_train.items()}
                    if self.warmup is not None or self.fit is not None
                    else {}
                )
                # The report's general text, on which the starting bits/byte are measured: no window is a copy.
                report_docs = [d for docs in general_docs.values() for d in docs]
                warmup = self._warm_up(
                    model,
                    extended,
                    domain_docs,
                    general_train,
                    new_ids,
                    new_tokenizer.eos_token_id,
                    task,
                    new_tokenizer,
                    report_docs,
                )
                per_step = warmup.pop("starting_bpb") if warmup else {}
                label = init["output"]
                if per_step:
                    label += "+warmup"
                    starting["starting_bpb"]["warmup_steps"] = per_step
                    starting["starting_bpb"]["outputs"][label] = per_step[str(self.warmup.steps)]
                input_fit = (
                    self.input_fit.run(model, base, extended, domain_docs, new_ids, report_docs)
                    if self.input_fit is not None
                    else None
                )
                if input_fit:
                    label += "+input_fit"
                    self._measure(starting, label, "the input fit", task, model, new_tokenizer)
                fit = (
                    self.fit.run(
                        model, extended, domain_docs, general_train, new_ids, new_tokenizer.eos_token_id, report_docs
                    )
                    if self.fit is not None
                    else None
                )
                if fit:
                    self._measure(starting, label + "+fit", "the output fit", task, model, new_tokenizer)
            trained_seconds = sum(part["seconds"] for part in (warmup, input_fit, fit) if part)
            measure_seconds = time.perf_counter() - measuring - trained_seconds
            model.save_pretrained(tmp, safe_serialization=True)
            make_portable(tmp)
            report = {
                "base_model": str(base_folder),
                "settings": self.settings,
                "vocab_size_before": len(tokenizer),
                "vocab_size_after": len(new_tokenizer),
                "new_tokens": len(new_tokens),
                # Candidates replaced because another's merges took their pieces first (produced.py):
                # never produced at all, or produced too rarely to save min_savings tokens.
                "dropped_never_produced": dropped["never_produced"],
                "dropped_below_min_savings": dropped["below_min_savings"],
                "embedding_rows": rows,
                **resize,
                # In-sample: the documents the tokens were chosen from.
                "domain": efficiency_rows(base, extended, domain_counts, {n: chars[n] for n in domain_counts}),
                "domain_held_out": held_out_rows(family, base, extended, held_docs),
                "documents": {
                    n: {"selection": len(train), "held_out": len(held), "held_out_copies_dropped": copies[n]}
                    for n, (train, held) in split.items()
                },
                "general_chose_tokens": not self.general_train,  # the report's general text filtered them
                "general": efficiency_rows(base, extended, general_counts, {n: chars[n] for n in general_counts}),
                "most_useful": most_useful_tokens(base, extended, all_domain, set(new_tokens)),
                # without the bpb measurement, the warm-up and the fit
                "build_seconds": round(time.perf_counter() - start - measure_seconds - trained_seconds, 1),
                "starting_bpb_seconds": round(measure_seconds, 1),
                "warmup": warmup,
                "input_fit": input_fit,
                "output_fit": fit,
                "family": family.name,
                **starting,
            }
            overall = report["domain"].get("overall") or next(iter(report["domain"].values()))
            report["domain_reduction_in_sample_pct"] = overall["reduction_pct"]
            held = report["domain_held_out"].get("overall") or next(iter(report["domain_held_out"].values()), None)
            report["domain_held_out_reduction"] = held
            general_rows = report["general"].get("overall") or next(iter(report["general"].values()), None)
            # Positive = general text needs more tokens than before (worse).
            report["general_change_pct"] = -general_rows["reduction_pct"] if general_rows else None
            (tmp / REPORT_NAME).write_text(strict_json.dumps(report, indent=1, ensure_ascii=False))
        print_report(report)
        log.info(
            "augmented tokenizer: %d new tokens, domain %s fewer tokens on held-out documents "
            "(%.2f%% in-sample), built in %.0fs",
            len(new_tokens),
            held_out_text(report),
            report["domain_reduction_in_sample_pct"],
            report["build_seconds"],
        )
        return folder

    def _bpb_per_output_rule(self, task, model, new_tokenizer, pieces, new_ids, old_rows, base_bpb) -> dict:
        """Starting-model bpb with each output rule of `starting_bpb.outputs`, against the base
        tokenizer's; leaves the model with the configured rule's rows."""
        if task is None:
            return {}
        init, per_rule = self.settings["init"], {}
        for output in self.starting_bpb.outputs:
            set_output_rows(model, pieces, new_ids, old_rows, output)
            per_rule[output] = task.measure(model, new_tokenizer)
            log.info(
                "starting model, init input=%s output=%s: domain %s bpb, general %s bpb (base tokenizer: %s, %s)",
                init["input"],
                output,
                per_rule[output].get("domain_bpb"),
                per_rule[output].get("general_bpb"),
                base_bpb.get("domain_bpb"),
                base_bpb.get("general_bpb"),
            )
        set_output_rows(model, pieces, new_ids, old_rows, init["output"])
        return {"starting_bpb": {"base_tokenizer": base_bpb, "input": init["input"], "outputs": per_rule}}

    @staticmethod
    def _measure(starting: dict, label: str, after: str, task, model, tokenizer) -> None:
        """With `task`: the starting bpb now, as the report's row `label`."""
        if task is None:
            return
        row = starting["starting_bpb"]["outputs"][label] = task.measure(model, tokenizer)
        log.info(
            "starting model after %s: domain %s bpb (%+.4f), general %s bpb (%+.4f)",
            after,
            row.get("domain_bpb"),
            row.get("domain_minus_base", float("nan")),
            row.get("general_bpb"),
            row.get("general_minus_base", float("nan")),
        )

    def _warm_up(
        self,
        model,
        extended: Tokenizer,
        domain_docs: dict,
        general_docs: dict,
        new_ids: list[int],
        separator,
        task,
        tokenizer,
        validation: list,
    ) -> dict | None:
        """Train the new rows alone (warmup.py) on the domain sources and the general training sources;
        with `task`, the starting bpb after each of `starting_bpb.warmup_steps` and after the last step."""
        if self.warmup is None:
            return None
        per_step: dict[str, dict] = {}
        checkpoints = {*self.starting_bpb.warmup_steps, self.warmup.steps} if task is not None else set()

        def measure(step: int) -> None:
            if step in checkpoints:
                per_step[str(step)] = task.measure(model, tokenizer)
                log.info(
                    "starting model after %d warm-up steps: domain %s bpb (%+.4f), general %s bpb (%+.4f)",
                    step,
                    per_step[str(step)].get("domain_bpb"),
                    per_step[str(step)].get("domain_minus_base", float("nan")),
                    per_step[str(step)].get("general_bpb"),
                    per_step[str(step)].get("general_minus_base", float("nan")),
                )

        result = self.warmup.run(
            model, extended, domain_docs, general_docs, new_ids, separator, on_step=measure, validation=validation
        )
        return result | {"starting_bpb": per_step}
