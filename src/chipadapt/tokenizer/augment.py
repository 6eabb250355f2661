"""`tokenizer=augmented`: ChipNeMo's domain-adapted tokenizer, built once per inputs and cached.

1. train a BPE tokenizer from scratch on the domain sources' training documents (not the ones DAPT
   holds out: held_out.py), words split as the base model's tokenizer splits them (family.py:
   byte-level or SentencePiece-style BPE; others are refused);
2. select its pieces the base vocabulary lacks, rare in general text, by tokens saved per entry on
   those training documents;
3. extend the base tokenizer with them as merges (extend.py says why), checking the round trip on
   every domain and general document and that no general document gets longer;
4. resize the model, new rows by `init` (init_rows.py; a tied model is untied), embeddings padded
   to a multiple of 64; then, with `init.warmup`, train the new rows alone briefly (warmup.py); with
   `init.input_fit`, teach the new input rows the base tokenization's hidden states (input_fit.py);
   and with `init.fit`, fit the new output rows to the training text (output_fit.py);
5. report tokens per character before and after, per source, on domain and general text: in-sample
   on the training documents, and on the held-out ones with a 95% interval paired by document; and
   the starting model's bits per byte per output-row rule against the base tokenizer's.
The result is one Hugging Face folder (model + tokenizer) with tokenizer_report.json inside.
DomainTokenizer (here) keys the build by its inputs and caches it; augment_build.py runs it.
"""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from chipadapt.code_versions import SELECTION_VERSION
from chipadapt.config_group_checks import check_tokenizer_adapt
from chipadapt.data.source_spec import SourceSpec, source_fingerprint, source_spec
from chipadapt.errors import ChipadaptError
from chipadapt.io.hashing import fingerprint_file, sha256_file, sha256_json
from chipadapt.io.lock import cache_entry_lock
from chipadapt.io.outputs import refuse_overlap_with_inputs
from chipadapt.tokenizer.augment_build import REPORT_NAME, AugmentedBuild, print_report
from chipadapt.tokenizer.input_fit import InputRowFit
from chipadapt.tokenizer.output_fit import OutputRowFit
from chipadapt.tokenizer.starting_bpb import StartingBpb
from chipadapt.tokenizer.warmup import EmbeddingWarmup

log = logging.getLogger(__name__)


# The stages whose data.sources are the text a domain tokenizer is built from (pretraining documents).
# Another stage's sources are conversations, queries or ratings: it starts from the model a tokenizer
# or DAPT run built (model.path), whose tokenizer is in its folder.
BUILDING_STAGES = ("tokenizer", "dapt")


def keep_base(folder: Path) -> Path:
    """`tokenizer=base`: the model folder as it is."""
    return folder


def _specs(sources: DictConfig | None, section: str) -> dict[str, SourceSpec]:
    """The sources of `section` (data.sources, data.val_sources) that are switched on: one set to null
    (`data.sources.NAME=null`, the README's way to drop one) is left out, as the DAPT blend does."""
    return {
        name: source_spec(OmegaConf.to_container(cfg, resolve=True), f"{section}.{name}")
        for name, cfg in (sources or {}).items()
        if cfg is not None
    }


class DomainTokenizer(AugmentedBuild):
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
        init: DictConfig,
        starting_bpb: StartingBpb | None = None,  # null: do not measure
        held_out: float | None = None,  # data.val_fraction: DAPT's held-out documents, kept out of selection
        stage: str | None = None,  # stage.name (none outside train.py)
    ):
        if stage is not None and stage not in BUILDING_STAGES:
            raise ChipadaptError(
                f"tokenizer: stage={stage} does not build an augmented tokenizer: it would be trained on this stage's "
                "data.sources, which are not pretraining documents (conversations, for sft); build it with "
                "stage=tokenizer (or in stage=dapt) and start this stage from that run's model with "
                "model.path=RUN/model, leaving tokenizer at base"
            )
        if starting_bpb is not None:
            starting_bpb.check_held_out()  # after the stage: SFT's data holds nothing out, which is not the point
        self.cache_dir = Path(cache_dir).expanduser()
        specs = _specs(sources, "data.sources")
        self.domain = {n: s for n, s in specs.items() if not s.general}
        self.general_train = {n: s for n, s in specs.items() if s.general}
        self.report_general = _specs(report_general, "data.val_sources")
        if not self.domain:
            raise ChipadaptError("tokenizer.adapt.sources: no domain source (every source is marked general)")
        # Before any source is read or tokenizer trained (a bad init rule used to fail only after).
        check_tokenizer_adapt(
            dict(
                domain_vocab_size=domain_vocab_size,
                max_new_tokens=max_new_tokens,
                max_general_per_million=max_general_per_million,
                min_savings=min_savings,
                max_pieces=max_pieces,
                init=init,
            )
        )
        self.settings = dict(
            domain_vocab_size=domain_vocab_size,
            max_new_tokens=max_new_tokens,
            max_general_per_million=max_general_per_million,
            min_savings=min_savings,
            max_pieces=max_pieces,
            init={"input": init["input"], "output": init["output"]},
            # Always in the key: builds before it chose tokens on the held-out documents too.
            held_out=held_out,
        )
        self.warmup: EmbeddingWarmup | None = init.get("warmup")
        if self.warmup is not None:  # only then in the cache key: builds without warm-up keep theirs
            self.settings["init"]["warmup"] = self.warmup.settings()
        self.input_fit: InputRowFit | None = init.get("input_fit")
        if self.input_fit is not None:  # the same: builds without it keep their key
            self.settings["init"]["input_fit"] = self.input_fit.settings()
        self.fit: OutputRowFit | None = init.get("fit")
        if self.fit is not None:  # the same: builds without a fit keep their key
            self.settings["init"]["fit"] = self.fit.settings()
        self.starting_bpb = starting_bpb
        if starting_bpb is not None:
            self.settings["starting_bpb"] = dict(vars(starting_bpb))

    def _key(self, base_folder: Path) -> str:
        files = {
            kind: {n: source_fingerprint(s, f"data.sources.{n}") for n, s in group.items()}
            for kind, group in (
                ("domain", self.domain),
                ("general", self.general_train),
                ("report", self.report_general),
            )
        }
        names = ("config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json")
        base = {name: sha256_file(base_folder / name) for name in names if (base_folder / name).exists()}
        # Weight contents, not sizes: a model retrained in place keeps its file sizes, and an augmented
        # copy of the old weights must not be reused for it. Files over 1 GiB are sampled (fingerprint_file).
        base["weights"] = {p.name: fingerprint_file(p) for p in sorted(base_folder.glob("*.safetensors"))}
        # The selection code's version too (code_versions.py): a build whose tokens an earlier selection
        # chose is not reused for the same inputs; it stays in the cache under its own key, unread, as a
        # GGUF folder of an earlier conversion does.
        return sha256_json([self.settings, files, base, {"selection_version": SELECTION_VERSION}])[:16]

    def inputs(self, base_folder: Path) -> list[tuple[str, str]]:
        """(config key, path) of every local folder or file the build reads."""
        sources = [
            (f"{section}.{name}.path", spec.path)
            for section, group in (
                ("data.sources", {**self.domain, **self.general_train}),
                ("data.val_sources", self.report_general),
            )
            for name, spec in group.items()
        ]
        return [("model.path", str(base_folder)), *sources]

    def build_folder(self, base_folder: Path) -> Path:
        """Where the build of `base_folder` with these settings and sources lies (built or not): its name
        holds the key of every input's content."""
        return self.cache_dir / f"{base_folder.name}--augmented-{self._key(base_folder)}"

    def __call__(self, base_folder: Path) -> Path:
        folder = self.build_folder(base_folder)
        # Before the build's lock and folder: the cache entry is written among no input's files (a user's
        # model folder as tokenizer.adapt.cache_dir), as a run folder or an output is not.
        refuse_overlap_with_inputs(
            folder, "tokenizer.adapt.cache_dir", self.inputs(base_folder), "choose a cache folder outside the inputs"
        )
        if not (folder / REPORT_NAME).is_file():
            with cache_entry_lock(folder, "tokenizer.adapt.cache_dir"):
                if not (folder / REPORT_NAME).is_file():  # else built by another process while this one waited
                    return self._build(base_folder, folder)
        log.info("augmented tokenizer and model: cached %s", folder)
        print_report(json.loads((folder / REPORT_NAME).read_text()))
        return folder
