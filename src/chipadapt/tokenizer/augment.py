"""`tokenizer=augmented`: ChipNeMo's domain-adapted tokenizer, built once per inputs and cached.

1. train a tokenizer of the base model's own family (same normalizer and pre-tokenizer, BPE) from
   scratch on the domain sources;
2. select its pieces the base vocabulary lacks, rare in general text, by tokens saved per entry;
3. extend the base tokenizer with them as merges (extend.py says why), checking the round trip;
4. resize the model: new input rows = mean of the token's base-piece embeddings, new output rows = 0
   (a tied model is untied), embeddings padded to a multiple of 64;
5. report tokens per character before and after, per source, on domain and general text.
The result is one Hugging Face folder (model + tokenizer) with tokenizer_report.json inside.
"""

import json
import logging
import time
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer

from chipadapt.data.sources import SourceSpec, read_source, source_files
from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory
from chipadapt.io.hashing import sha256_file, sha256_json
from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer
from chipadapt.report import console
from chipadapt.tokenizer.extend import extended_tokenizer_json, padded_size, resize_for_new_tokens
from chipadapt.tokenizer.report import efficiency_rows, reduction_table
from chipadapt.tokenizer.select_tokens import select_new_tokens
from chipadapt.tokenizer.words import word_counts

log = logging.getLogger(__name__)

REPORT_NAME = "tokenizer_report.json"


def keep_base(folder: Path) -> Path:
    """`tokenizer=base`: the model folder as it is."""
    return folder


def _specs(sources: DictConfig | None) -> dict[str, SourceSpec]:
    return {name: SourceSpec(**OmegaConf.to_container(cfg, resolve=True)) for name, cfg in (sources or {}).items()}


class DomainTokenizer:
    def __init__(
        self,
        cache_dir: str,
        sources: DictConfig,
        report_general: DictConfig | None,
        domain_vocab_size: int,
        max_new_tokens: int,
        max_general_per_million: float,
        min_savings: int,
        max_pieces: int,
    ):
        self.cache_dir = Path(cache_dir).expanduser()
        specs = _specs(sources)
        self.domain = {n: s for n, s in specs.items() if not s.general}
        self.general_train = {n: s for n, s in specs.items() if s.general}
        self.report_general = _specs(report_general)
        if not self.domain:
            raise ChipadaptError("tokenizer.adapt.sources: no domain source (every source is marked general)")
        if domain_vocab_size < 300 or max_new_tokens < 1:
            raise ChipadaptError(
                f"tokenizer.adapt: domain_vocab_size={domain_vocab_size} must be at least 300 (bytes + specials) "
                f"and max_new_tokens={max_new_tokens} at least 1"
            )
        self.settings = dict(
            domain_vocab_size=domain_vocab_size, max_new_tokens=max_new_tokens,
            max_general_per_million=max_general_per_million, min_savings=min_savings, max_pieces=max_pieces,
        )

    def _key(self, base_folder: Path) -> str:
        files = {
            kind: {n: [sha256_file(f) for f in source_files(s, f"data.sources.{n}")] for n, s in group.items()}
            for kind, group in (("domain", self.domain), ("general", self.general_train), ("report", self.report_general))
        }
        base = {name: sha256_file(base_folder / name) for name in ("config.json", "tokenizer.json") if (base_folder / name).exists()}
        base["weights"] = sorted((p.name, p.stat().st_size) for p in base_folder.glob("*.safetensors"))
        return sha256_json([self.settings, files, base])[:16]

    def __call__(self, base_folder: Path) -> Path:
        folder = self.cache_dir / f"{base_folder.name}--augmented-{self._key(base_folder)}"
        if (folder / REPORT_NAME).is_file():
            log.info("augmented tokenizer and model: cached %s", folder)
            console.print(reduction_table(json.loads((folder / REPORT_NAME).read_text())))
            return folder
        start = time.perf_counter()
        tokenizer = load_tokenizer(base_folder)
        base = tokenizer.backend_tokenizer
        domain_docs = {n: read_source(s, f"data.sources.{n}") for n, s in self.domain.items()}
        domain_texts = [d.text for docs in domain_docs.values() for d in docs]

        log.info("training a %d-entry domain tokenizer on %d documents ...", self.settings["domain_vocab_size"], len(domain_texts))
        domain_tokenizer = tokenizer.train_new_from_iterator(domain_texts, vocab_size=self.settings["domain_vocab_size"])
        domain_counts = {n: word_counts(base, (d.text for d in docs)) for n, docs in domain_docs.items()}
        all_domain = sum(domain_counts.values(), start=Counter())
        filter_specs = self.general_train or self.report_general
        if not self.general_train:
            log.warning("no training source is marked general: filtering new tokens on the report's general text")
        filter_counts = word_counts(base, (d.text for n, s in filter_specs.items() for d in read_source(s, f"tokenizer.adapt.{n}")))

        chosen, _ = select_new_tokens(
            base, list(domain_tokenizer.get_vocab()), all_domain, filter_counts,
            max_new_tokens=self.settings["max_new_tokens"],
            max_general_per_million=self.settings["max_general_per_million"],
            min_savings=self.settings["min_savings"], max_pieces=self.settings["max_pieces"],
        )
        extended_json, new_tokens = extended_tokenizer_json(base.to_str(), chosen)
        extended = Tokenizer.from_str(extended_json)
        self._check_round_trip(base, extended, domain_texts)

        general_docs = {n: read_source(s, f"data.val_sources.{n}") for n, s in self.report_general.items()}
        general_counts = {n: word_counts(base, (d.text for d in docs)) for n, docs in general_docs.items()}
        chars = {n: sum(len(d.text) for d in docs) for n, docs in {**domain_docs, **general_docs}.items()}
        with atomic_directory(folder) as tmp:
            tokenizer.save_pretrained(tmp)
            (tmp / "tokenizer.json").write_text(extended_json, encoding="utf-8")
            new_tokenizer = load_tokenizer(tmp)
            self._check_specials(tokenizer, new_tokenizer, len(new_tokens))
            model = load_causal_lm(base_folder, "float32", "sdpa")
            new_ids = [extended.token_to_id(t) for t in new_tokens]
            rows = padded_size(len(new_tokenizer))
            resize = resize_for_new_tokens(model, base, new_tokens, new_ids, rows)
            model.save_pretrained(tmp, safe_serialization=True)
            report = {
                "base_model": str(base_folder),
                "settings": self.settings,
                "vocab_size_before": len(tokenizer),
                "vocab_size_after": len(new_tokenizer),
                "new_tokens": len(new_tokens),
                "embedding_rows": rows,
                **resize,
                "domain": efficiency_rows(base, extended, domain_counts, {n: chars[n] for n in domain_counts}),
                "general": efficiency_rows(base, extended, general_counts, {n: chars[n] for n in general_counts}),
                "most_useful": self._most_useful(base, extended, all_domain, set(new_tokens)),
                "build_seconds": round(time.perf_counter() - start, 1),
            }
            overall = report["domain"].get("overall") or next(iter(report["domain"].values()))
            report["domain_reduction_pct"] = overall["reduction_pct"]
            general_rows = report["general"].get("overall") or next(iter(report["general"].values()), None)
            # Positive = general text needs more tokens than before (worse).
            report["general_change_pct"] = -general_rows["reduction_pct"] if general_rows else None
            (tmp / REPORT_NAME).write_text(json.dumps(report, indent=1, ensure_ascii=False))
        console.print(reduction_table(report))
        log.info("augmented tokenizer: %d new tokens, domain %.2f%% fewer tokens, built in %.0fs",
                 len(new_tokens), report["domain_reduction_pct"], report["build_seconds"])
        return folder

    @staticmethod
    def _check_round_trip(base: Tokenizer, extended: Tokenizer, texts: list[str]) -> None:
        # Extension must decode exactly as the base does (the base itself may drop bytes its
        # vocabulary lacks; that is the base's property, not ours).
        for i, text in enumerate(texts):
            if extended.decode(extended.encode(text).ids) != base.decode(base.encode(text).ids):
                raise ChipadaptError(f"tokenizer: round trip differs from the base tokenizer on domain document {i}")

    @staticmethod
    def _check_specials(before, after, added: int) -> None:
        if after.all_special_tokens != before.all_special_tokens or after.chat_template != before.chat_template:
            raise ChipadaptError("tokenizer: extension changed the special tokens or the chat template")
        if len(after) != len(before) + added:
            raise ChipadaptError(f"tokenizer: expected {len(before) + added} entries, got {len(after)}")

    @staticmethod
    def _most_useful(base: Tokenizer, extended: Tokenizer, counts, new: set[str], top: int = 30) -> list[dict]:
        saved: dict[str, int] = {}
        for word, n in counts.items():
            for token in extended.model.tokenize(word):
                if token.value in new:
                    saved[token.value] = saved.get(token.value, 0) + n * (len(base.model.tokenize(token.value)) - 1)
        best = sorted(saved.items(), key=lambda kv: -kv[1])[:top]
        decoder = base.decoder
        return [{"token": decoder.decode([t]) if decoder else t, "tokens_saved": s} for t, s in best]
