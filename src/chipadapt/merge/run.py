"""merge.py: stream two (or three) Hugging Face folders tensor by tensor through a merge method.

Writes an HF folder at `output` (temporary folder renamed when complete) with the tokenizer of the
input whose vocabulary is longest, the chip model's on a tie (every input must have one, and each
must be a prefix of that one: merge/vocabulary.py), `merge_diagnostics.csv` (per tensor: lambda,
angle, norms, fallback, extra rows and the model they come from) and `merge_manifest.json`.
"""

import csv
import io
import json
import logging
import re
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
from chipadapt.io.outputs import check_output_folder, written_by
from chipadapt.manifest import fingerprint_input, git_state
from chipadapt.merge.io import SafetensorsModel
from chipadapt.merge.mergekit_config import write_mergekit_config
from chipadapt.merge.methods.base import TensorStats
from chipadapt.merge.safetensors_stream import PlannedShardWriter
from chipadapt.merge.vocabulary import RowPlan, SharedVocabulary, shared_vocabulary
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
)
OUT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Facts of the vocabulary, not of the weights: an output carrying another input's tokenizer takes them
# from that input's config.json with it (config.json's eos_token_id must be the tokenizer's).
VOCABULARY_CONFIG_KEYS = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")


def lambda_schedule(default: float, schedule) -> callable:
    """First matching pattern wins: [{pattern: 'layers\\.(0|1)\\.', lam: 0.3}, ...]."""
    rules = [(re.compile(rule["pattern"]), float(rule["lam"])) for rule in (schedule or [])]

    def lam_for(name: str) -> float:
        return next((lam for pattern, lam in rules if pattern.search(name)), default)

    return lam_for


def check_architecture(chip: SafetensorsModel, other: SafetensorsModel) -> None:
    for key in ARCHITECTURE_KEYS:
        if chip.config.get(key) != other.config.get(key):
            raise ChipadaptError(
                f"{other.key}: config.{key}={other.config.get(key)} differs from models.chip ({chip.config.get(key)})"
            )


MODEL_KEYS = ("chip", "instruct", "base")  # cfg.models: the folders a merge reads
# Rows per block are chosen so a block holds about this many elements (16 MB in float32).
BLOCK_ELEMENTS = 1 << 22
# Tensors up to this size keep the blocks of the statistics pass for the merge pass instead of
# reading them again (two inputs of 64 MB in float32); only embeddings of large vocabularies
# are read twice.
REUSE_ELEMENTS = 1 << 24


def merge_tensor(
    method, name: str, lam: float, chip, instruct, base, writer, plan: RowPlan | None = None, dtype=None
) -> dict:
    """Merge one tensor into the writer, a block of rows at a time for chunkable methods. `plan`: for
    a vocabulary embedding, the rows merged and the rows copied from one input (merge/vocabulary.py).
    `dtype`: the one written (merge.out_dtype), else the chip model's. Returns the tensor's diagnostics."""
    shape_c, shape_i = chip.shape(name), instruct.shape(name)
    shape_b = base.shape(name) if base else shape_c
    if plan is None:
        if shape_c != shape_i or shape_b != shape_c:
            raise ChipadaptError(
                f"tensor {name}: shape {shape_c} in models.chip vs {shape_i} in models.instruct"
                + (f" and {shape_b} in models.base" if base else "")
            )
        shared = rows = shape_c[0] if shape_c else 0
        source = chip
    else:
        shared, rows, source = plan.merged, plan.rows, plan.source
    dtype = dtype or chip.dtype(name)

    if not shape_c:  # a scalar
        c, i = chip.get(name), instruct.get(name)
        result = method(name, c, i, base.get(name) if base else None, lam, TensorStats.of(c, i))
        writer.write_rows(name, 0, result.tensor.to(dtype))
        return {**result.diagnostics, "extra_rows": 0}

    rows_per_block = max(1, BLOCK_ELEMENTS // max(1, int(torch.Size(shape_c[1:]).numel())))
    step = rows_per_block if method.chunkable else max(shared, 1)  # else the whole tensor in one block
    blocks = [(a, min(a + step, shared)) for a in range(0, shared, step)]
    reuse = shared * max(1, int(torch.Size(shape_c[1:]).numel())) <= REUSE_ELEMENTS
    kept = {}
    stats = TensorStats()
    for a, z in blocks:  # pass 1: norms and angle over the shared rows
        c, i = chip.rows(name, a, z), instruct.rows(name, a, z)
        stats.add(c, i)
        if reuse:
            kept[a] = (c, i)
    stats.finish()
    diagnostics = {}
    for a, z in blocks:  # pass 2: merge block by block, straight to the output file
        c, i = kept.pop(a) if reuse else (chip.rows(name, a, z), instruct.rows(name, a, z))
        result = method(name, c, i, base.rows(name, a, z) if base else None, lam, stats)
        writer.write_rows(name, a, result.tensor.to(dtype))
        diagnostics = result.diagnostics
    # Rows of tokens only the source's tokenizer has (and its padding past them): copied, not averaged
    # with another model's missing or untrained row.
    for a in range(shared, rows, rows_per_block):
        writer.write_rows(name, a, source.rows(name, a, min(rows, a + rows_per_block)).to(dtype))
    diagnostics["extra_rows"] = rows - shared
    diagnostics["extra_rows_from"] = source.key if rows > shared else ""
    return diagnostics


def output_config(chip: SafetensorsModel, vocabulary: SharedVocabulary, tied: bool, out_dtype: str | None) -> dict:
    """The chip model's config.json, with the vocabulary of the tokenizer the output carries and the
    dtype its weights are written in (`dtype` in transformers 5, `torch_dtype` before)."""
    config = dict(chip.config, tie_word_embeddings=tied)
    if out_dtype:
        config.update({key: out_dtype for key in ("dtype", "torch_dtype") if key in config})
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


def merge_models(cfg: DictConfig, replace_own_output: bool = False) -> dict:
    """The merge (and its evaluation, with `eval=[...]`); its summary. `replace_own_output`: this job
    started before and did not complete; when its merged model was published (the evaluation was
    interrupted), it is evaluated as it is, and the tasks that evaluation finished are kept."""
    kept = merged_before(cfg) if replace_own_output else None
    if kept is None:
        out, summary = merge_weights(cfg, replace_own_output)
    else:
        out, summary = kept
        log.info("merge: %s holds this job's merged model; not merged again, its evaluation goes on", out)
    if cfg.eval:
        # Evaluate the merged folder (sweeps compare lambdas on these numbers).
        from chipadapt.eval.run import evaluate_folder, write_results

        results = evaluate_folder(
            out,
            cfg.eval,
            cfg.device,
            Path(cfg.paths.output_dir),
            cfg.eval_model.dtype,
            cfg.eval_model.attn_implementation,
            resume=replace_own_output,
        )
        write_results(results, Path(cfg.paths.output_dir), f"Evaluation of {cfg.merge.name} lam={cfg.merge.lam}")
        manifest = json.loads((out / "merge_manifest.json").read_text())
        write_json_atomic(out / "merge_manifest.json", {**manifest, "evaluation": results})
        summary["evaluation"] = results
    return summary


def merged_before(cfg: DictConfig) -> tuple[Path, dict] | None:
    """(folder, summary) of a merged model this job published before, with exactly these settings
    (merge.py published it whole, so its merge_manifest.json says it is complete); else None."""
    out = Path(cfg.output).expanduser().resolve()
    try:
        recorded = json.loads((out / "merge_manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if written_by(out) != "merge" or recorded.get("config") != OmegaConf.to_container(cfg, resolve=True):
        return None
    # The same settings are not the same inputs: a chip model retrained in place since is merged again.
    if recorded.get("input_fingerprints") != input_fingerprints(cfg):
        return None
    return out, dict(recorded.get("summary") or {})


def input_fingerprints(cfg: DictConfig) -> dict[str, str | None]:
    return {key: fingerprint_input(cfg.models[key])["fingerprint"] for key in MODEL_KEYS if cfg.models.get(key)}


def merge_weights(cfg: DictConfig, replace_own_output: bool) -> tuple[Path, dict]:
    """Merge the models into `cfg.output` (published whole when complete); (folder, summary)."""
    start = time.perf_counter()
    out_dtype = cfg.merge.get("out_dtype")
    if out_dtype is not None and out_dtype not in OUT_DTYPES:
        raise ChipadaptError(f"merge.out_dtype: {out_dtype!r} is not one of {', '.join(OUT_DTYPES)} (or null)")
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
    # Before any work: never onto an input, a folder holding one, or a folder merge.py did not write.
    out = check_output_folder(
        cfg.output,
        "merge",
        "output",
        bool(cfg.overwrite) or replace_own_output,
        [(m.key, m.folder) for m in (chip, instruct, base) if m],
    )
    lam_for = lambda_schedule(float(cfg.merge.lam), cfg.merge.schedule)
    tied = chip.tied and instruct.tied and (base is None or base.tied)
    names = chip.names()
    if not tied and "lm_head.weight" not in names and chip.has("lm_head.weight"):
        names.append("lm_head.weight")  # one side has its own output embedding: write it out
    for other in (instruct, base):
        for name in other.names() if other else []:
            if not chip.has(name):
                raise ChipadaptError(f"tensor {name}: in {other.key} but not in models.chip")

    plans = {name: vocabulary.row_plan(name) for name in names}
    shapes = {name: (plan.rows, *chip.shape(name)[1:]) if plan else chip.shape(name) for name, plan in plans.items()}
    # The math is float32 whatever is written; integer buffers keep their dtype.
    dtypes = {
        name: OUT_DTYPES[out_dtype] if out_dtype and chip.dtype(name).is_floating_point else chip.dtype(name)
        for name in names
    }

    rows, fallbacks = [], Counter()
    with atomic_directory(out, "merge") as tmp:
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
                diag = merge_tensor(method, name, lam, chip, instruct, base, writer, plans[name], dtypes[name])
                fallbacks[diag.get("fallback") or "none"] += 1
                rows.append({"tensor": name, "shape": "x".join(map(str, shapes[name])), "lam": lam, **diag})
                bar.advance(task)
        writer.close()
        write_json_atomic(tmp / "config.json", output_config(chip, vocabulary, tied, out_dtype))
        for file in TOKENIZER_FILES:  # all from one input: files of two tokenizers would not agree
            if (vocabulary.source.folder / file).is_file():
                shutil.copy2(vocabulary.source.folder / file, tmp / file)
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
        # The same merge as a mergekit recipe, so either tool can redo the other's merge.
        write_mergekit_config(
            tmp / "mergekit_config.yml",
            cfg,
            rows,
            str(dtypes[names[0]]).removeprefix("torch."),
            None if vocabulary.same else "union",
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


def previous_job(cfg: DictConfig, run_dir: Path) -> tuple[str, dict | None]:
    """What this run folder already holds of this very job (a sweep rerun after an interruption: a
    preempted SLURM array, reproduce.py resuming a step):
    - ("done", summary): it completed with the same settings and the same input models (by content):
      not merged and evaluated again;
    - ("unfinished", None): it started with the same settings and inputs but did not complete (the
      merged model may be written, its evaluation not): run again, replacing its own output;
    - ("new", None): anything else, including overwrite=true and changed inputs (a retrained chip
      model): the usual checks on the output folder apply."""
    path = run_dir / "manifest.json"
    if cfg.overwrite or not path.is_file():
        return "new", None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return "new", None
    if recorded.get("config") != OmegaConf.to_container(cfg, resolve=True):
        return "new", None
    inputs = recorded.get("inputs") or {}
    for key in MODEL_KEYS:
        if cfg.models.get(key):
            before = (inputs.get(f"models.{key}") or {}).get("fingerprint")
            if before is None or before != fingerprint_input(cfg.models[key])["fingerprint"]:
                return "new", None
    if recorded.get("status") == "completed" and (Path(cfg.output) / "merge_manifest.json").is_file():
        return "done", {**(recorded.get("metrics") or {}), "evaluation": recorded.get("results")}
    return "unfinished", None


def run(cfg: DictConfig) -> dict:
    """merge.py: the merge, recorded in the run folder's manifest.json and sent to the loggers (the
    inputs' and the merged model's fingerprints, the merge summary, the evaluation and its items)."""
    from chipadapt.eval.run import log_results
    from chipadapt.job import recorded_job
    from chipadapt.loggers.job import JobLoggers, numeric_items

    run_dir = Path(cfg.paths.output_dir)
    state, summary = previous_job(cfg, run_dir)
    if state == "done":
        log.info("merge: %s completed before with these settings and inputs; not merged again", run_dir)
        return summary
    if state == "unfinished":
        log.info("merge: %s did not complete before; going on", run_dir)
    with (
        recorded_job(cfg, "merge", run_dir) as manifest,
        JobLoggers(cfg.get("logger"), manifest.data["config"]) as loggers,
    ):
        for key in MODEL_KEYS:
            if cfg.models.get(key):
                manifest.add_input(f"models.{key}", cfg.models[key])
        # An unfinished job of the same settings and inputs replaces its own output.
        summary = merge_models(cfg, replace_own_output=state == "unfinished")
        evaluation = summary.get("evaluation")
        manifest.update("metrics", {k: v for k, v in summary.items() if k != "evaluation"})
        loggers.log_model("output_model", manifest.add_input("output", cfg.output))
        loggers.log_metrics(
            numeric_items({k: v for k, v in summary.items() if k not in ("evaluation", "lam")}, "merge/")
        )
        if evaluation:
            manifest.update("results", evaluation)
            log_results(loggers, evaluation, run_dir)
    return summary
