"""The merged model folder: two (or three) Hugging Face folders checked against each other, then
streamed tensor by tensor through a merge method (merge/tensor_merge.py).

Writes an HF folder at `output` (temporary folder renamed when complete) with the tokenizer of the
input whose vocabulary is longest, the chip model's on a tie (every input must have one, and each
must be a prefix of that one: merge/vocabulary.py), the chat template and generation_config.json of
the model that has one, the instruct model's where both do (merge/chat_files.py), the SteerLM attribute
record where the merged weights hold a SteerLM model's (merge/steerlm_record.py),
`merge_diagnostics.csv` (per tensor: lambda, angle, norms, fallback, extra rows and the model they come
from, the input a non-float tensor is copied from: merge/non_float.py), `merge_manifest.json` and
`mergekit_config.yml` (merge/mergekit_export.py).
"""

import csv
import io
import logging
import shutil
import time
from collections import Counter
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chipadapt.errors import ChipadaptError
from chipadapt.io.atomic import atomic_directory, write_json_atomic
from chipadapt.manifest import fingerprint_input, git_state
from chipadapt.merge.chat_files import (
    AUTO,
    auto_is_a_tie,
    chat_template_of,
    check_chat_template,
    check_chat_template_from,
    take_chat_files,
)
from chipadapt.merge.dtypes import CONFIG_DTYPE_KEYS, dtype_name, no_out_dtype_reason, written_dtype
from chipadapt.merge.io import SafetensorsModel
from chipadapt.merge.mergekit_export import write_mergekit_config
from chipadapt.merge.non_float import copy_tensor, non_float_sources
from chipadapt.merge.output_folder import MODEL_KEYS, check_merge_output
from chipadapt.merge.safetensors_stream import PlannedShardWriter
from chipadapt.merge.steerlm_record import carried_record, with_record
from chipadapt.merge.tensor_merge import check_schedule_matches, lambda_schedule, merge_tensor
from chipadapt.merge.vocabulary import SharedVocabulary, shared_vocabulary
from chipadapt.models.portable_folder import make_portable
from chipadapt.report import console

log = logging.getLogger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "generation_config.json",
    "tokenizer_report.json",
)
ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)
DIAGNOSTIC_COLUMNS = (
    "tensor",
    "shape",
    "lam",
    "angle_deg",
    "norm_chip",
    "norm_instruct",
    "norm_ratio",
    "fallback",
    "extra_rows",
    "extra_rows_from",
    "copied_from",
)
OUT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Facts of the vocabulary, not of the weights: an output carrying another input's tokenizer takes them
# from that input's config.json with it (config.json's eos_token_id must be the tokenizer's).
VOCABULARY_CONFIG_KEYS = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")


def check_architecture(chip: SafetensorsModel, other: SafetensorsModel) -> None:
    for key in ARCHITECTURE_KEYS:
        if chip.config.get(key) != other.config.get(key):
            raise ChipadaptError(
                f"{other.key}: config.{key}={other.config.get(key)} differs from models.chip ({chip.config.get(key)})"
            )


def output_config(chip: SafetensorsModel, vocabulary: SharedVocabulary, tied: bool, out_dtype: str | None) -> dict:
    """The chip model's config.json, with the vocabulary of the tokenizer the output carries and the
    dtype its weights are written in (`dtype` in transformers 5, `torch_dtype` before)."""
    config = dict(chip.config, tie_word_embeddings=tied)
    if out_dtype:
        config.update({key: out_dtype for key in CONFIG_DTYPE_KEYS if key in config})
    if vocabulary.source is not chip:
        source = vocabulary.source.config
        config.update({key: source[key] for key in VOCABULARY_CONFIG_KEYS if key in source})
        # Multimodal configs (Gemma-3) keep the language model's vocabulary in text_config.
        if isinstance(config.get("text_config"), dict) and isinstance(source.get("text_config"), dict):
            text = source["text_config"]
            config["text_config"] = {
                **config["text_config"],
                **{key: text[key] for key in VOCABULARY_CONFIG_KEYS if key in text},
            }
    return config


def models_read(cfg: DictConfig) -> list[str]:
    """The keys of `models` the merge reads: chip, instruct, and base where the method reads one
    (task_arithmetic, ties, della; chipalign, linear and slerp read none, whatever models.base says)."""
    reads_base = bool(getattr(instantiate(cfg.merge.method), "needs_base", False))
    return [key for key in MODEL_KEYS if cfg.models.get(key) and (key != "base" or reads_base)]


def input_fingerprints(cfg: DictConfig) -> dict[str, str | None]:
    """The content fingerprints of the models the merge reads: a base it never opens is no input of it
    (hashing it cost a pass over a whole model, and a retrained one would have passed for a changed merge)."""
    return {key: fingerprint_input(cfg.models[key])["fingerprint"] for key in models_read(cfg)}


def same_inputs(recorded, cfg: DictConfig) -> bool:
    """Whether a merge_manifest.json's `input_fingerprints` are this merge's inputs. Only the models read
    are compared: a manifest written before unread bases were left out also fingerprints the base of a
    chipalign/linear/slerp merge, and is still this merge when the models it read are unchanged."""
    if not isinstance(recorded, dict):
        return False
    now = input_fingerprints(cfg)
    return all(recorded.get(key) == fingerprint for key, fingerprint in now.items())


def merge_weights(cfg: DictConfig, replace_own_output: bool) -> tuple[Path, dict]:
    """Merge the models into `cfg.output` (published whole when complete); (folder, summary)."""
    start = time.perf_counter()
    out_dtype = cfg.merge.get("out_dtype")
    if out_dtype is not None and out_dtype not in OUT_DTYPES:
        raise ChipadaptError(f"merge.out_dtype: {out_dtype!r} is not one of {', '.join(OUT_DTYPES)} (or null)")
    check_chat_template_from(cfg.merge.chat_template_from)
    check_chat_template(cfg.merge.chat_template)
    method = instantiate(cfg.merge.method)
    chip = SafetensorsModel(cfg.models.chip, "models.chip")
    instruct = SafetensorsModel(cfg.models.instruct, "models.instruct")
    check_architecture(chip, instruct)
    base = None
    if method.needs_base:
        if not cfg.models.base:
            raise ChipadaptError(f"models.base: merge={cfg.merge.name} needs a base model folder")
        base = SafetensorsModel(cfg.models.base, "models.base")
        check_architecture(chip, base)
    inputs = [m for m in (chip, instruct, base) if m]
    # Before any work: each input's weights are the whole model its config.json describes, and all
    # share one vocabulary (one may extend the others); else the output would be silently wrong.
    for model in inputs:
        model.check_against_config()
    vocabulary = shared_vocabulary(chip, inputs[1:])
    lam_for = lambda_schedule(float(cfg.merge.lam), cfg.merge.schedule)
    tied = chip.tied and instruct.tied and (base is None or base.tied)
    names = chip.names()
    if not tied and "lm_head.weight" not in names and chip.has("lm_head.weight"):
        names.append("lm_head.weight")  # one side has its own output embedding: write it out
    for other in (instruct, base):
        for name in other.names() if other else []:
            if not chip.has(name):
                raise ChipadaptError(f"tensor {name}: in {other.key} but not in models.chip")
    check_schedule_matches(cfg.merge.schedule, names)
    # Masks and ids: copied, never interpolated; refused where the inputs' differ (before any work).
    copied = non_float_sources(names, inputs, cfg.merge.non_float_from)
    # Before any work: never onto an input, a folder holding one, or a folder merge.py did not write.
    out = check_merge_output(
        cfg.output, bool(cfg.overwrite) or replace_own_output, [(m.key, m.folder) for m in (chip, instruct, base) if m]
    )

    plans = {name: vocabulary.row_plan(name) for name in names}
    shapes = {name: (plan.rows, *chip.shape(name)[1:]) if plan else chip.shape(name) for name, plan in plans.items()}
    # The math is float32 whatever is written; integer buffers keep their dtype. merge.out_dtype casts every
    # float tensor, as mergekit's out_dtype; null keeps each in the chip model's dtype for it (norms kept
    # in float32 beside bfloat16 weights stay float32).
    dtypes = {
        name: OUT_DTYPES[out_dtype] if out_dtype and chip.dtype(name).is_floating_point else chip.dtype(name)
        for name in names
    }

    rows, fallbacks = [], Counter()
    with atomic_directory(out, "merge", "output") as tmp:
        writer = PlannedShardWriter(tmp, [(n, shapes[n], dtypes[n]) for n in names], int(cfg.max_shard_bytes))
        with Progress(
            TextColumn(f"merge={cfg.merge.name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("", total=len(names))
            for name in names:
                lam = lam_for(name)
                if name in copied:
                    diag = copy_tensor(name, copied[name], writer, dtypes[name])
                else:
                    diag = merge_tensor(method, name, lam, chip, instruct, base, writer, plans[name], dtypes[name])
                fallbacks[diag.get("fallback") or "none"] += 1
                rows.append({"tensor": name, "shape": "x".join(map(str, shapes[name])), "lam": lam, **diag})
                bar.advance(task)
        writer.close()
        # The SteerLM record where the merged weights hold a SteerLM model's (merge/steerlm_record.py).
        steerlm, steerlm_from = carried_record(chip, instruct, [r["lam"] for r in rows if r["tensor"] not in copied])
        config = with_record(output_config(chip, vocabulary, tied, out_dtype), steerlm)
        write_json_atomic(tmp / "config.json", config)
        for file in TOKENIZER_FILES:  # all from one input: files of two tokenizers would not agree
            if (vocabulary.source.folder / file).is_file():
                shutil.copy2(vocabulary.source.folder / file, tmp / file)
        chat_files = take_chat_files(
            tmp,
            vocabulary.source,
            chip,
            instruct,
            cfg.merge.chat_template_from,
            cfg.merge.chat_template,
            base,
        )
        make_portable(tmp)
        table = io.StringIO()
        csv_writer = csv.DictWriter(table, fieldnames=DIAGNOSTIC_COLUMNS, extrasaction="ignore")
        csv_writer.writeheader()
        csv_writer.writerows(rows)
        (tmp / "merge_diagnostics.csv").write_text(table.getvalue())
        angles = [r["angle_deg"] for r in rows if r.get("angle_deg") is not None]
        seconds = time.perf_counter() - start
        input_bytes = sum(f.stat().st_size for m in (chip, instruct, base) if m for f in set(m.files.values()))
        summary = {
            "method": cfg.merge.name,
            "lam": float(cfg.merge.lam),
            "tensors": len(rows),
            "fallbacks": dict(fallbacks),
            "angle_deg_mean": sum(angles) / len(angles) if angles else None,
            "angle_deg_max": max(angles) if angles else None,
            # Embedding rows copied unmerged from one input (its tokens only), and that input.
            "extra_rows": {r["tensor"]: r["extra_rows"] for r in rows if r["extra_rows"]},
            "extra_rows_from": sorted({r["extra_rows_from"] for r in rows if r["extra_rows"]}),
            "vocabulary": vocabulary.summary(),
            "seconds": round(seconds, 2),
            "input_bytes": input_bytes,
            "input_gb_per_s": input_bytes / 1e9 / seconds,
            "output_bytes": writer.total_bytes,
            "tied_embeddings": tied,
            # Tensors written in each dtype: a null merge.out_dtype keeps the chip model's, which may be several.
            "dtypes": dict(sorted(Counter(dtype_name(dtypes[name]) for name in names).items())),
            # Non-float tensors (masks, ids): copied, equal in every input or from non_float_from.
            "non_float": {r["tensor"]: f"{r['fallback']} ({r['copied_from']})" for r in rows if r.get("copied_from")},
            **chat_files,
            "steerlm_record": steerlm_from,
        }
        write_json_atomic(
            tmp / "merge_manifest.json",
            {
                "config": OmegaConf.to_container(cfg, resolve=True),
                "git": git_state(),
                "inputs": {m.key: str(m.folder) for m in (chip, instruct, base) if m},
                "input_fingerprints": input_fingerprints(cfg),
                "summary": summary,
                "diagnostics_csv": "merge_diagnostics.csv",
            },
        )
        # The same merge as a mergekit recipe, so either tool can redo the other's merge: out_dtype is the
        # one dtype every float tensor was written in, None where no one dtype says what was written.
        write_mergekit_config(
            tmp / "mergekit_config.yml",
            cfg,
            rows,
            out_dtype or written_dtype(chip),
            None if vocabulary.same else "union",
            chat_template_of(tmp),
            cfg.merge.chat_template == AUTO and auto_is_a_tie(inputs),
            None if out_dtype else no_out_dtype_reason(chip),
        )
    log.info(
        "merge=%s lam=%s: %d tensors, fallbacks %s, mean angle %s deg, %.1f s (%.2f GB/s read) -> %s",
        cfg.merge.name,
        cfg.merge.lam,
        len(rows),
        dict(fallbacks),
        f"{summary['angle_deg_mean']:.2f}" if angles else "-",
        seconds,
        summary["input_gb_per_s"],
        out,
    )
    return out, summary
