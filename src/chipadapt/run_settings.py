"""A run's settings as the checks that compare two runs read them: the resume check
(stages/resume_settings.trajectory_settings), the completed-run check (finished_run.settings) and the
validation a resumed run compares with its start (stages/common.StartingMetrics).

All three read a setting the same way, or one check passes what another refuses:
- a folder that moves between machines, SLURM nodes or installs (the cache, the shared data, the
  installed package's resources) is named by its config key: `${paths.shared_data}/chat/x.jsonl` on
  every machine, through a symlink or at the real path; what matters is its content, which the
  checks compare by fingerprint;
- what the stage never reads is left out (NOT_READ, READ_IN_PART: `data.*` and `tokenizer.*` for the
  retriever and the reranker, which train on passages with the encoder's own tokenizer; the training
  groups for the stages that train nothing), and so is the evaluation composed beside a stage's config
  (`eval.*`: what it decides, such as the eda_script split, is resolved into the stage's own keys); the
  same table refuses a command-line override of what the stage never reads (stage_reads.py);
- a key a later chipadapt added or a value it renamed reads, in an earlier run's record, at its earlier
  meaning (ADDED_KEYS, RENAMED_VALUES)."""

import re
from importlib import resources

from chipadapt.config_typing import RETIRED_KEYS
from chipadapt.io.dotted_keys import flatten

# What a stage never reads, as top-level sections or dotted keys: a change there is no change of its run, and
# train.py refuses a command-line override of it before any work (stage_reads.check_stage_reads), as the
# user would take it for applied. The stages that train nothing never read the training groups; the retriever
# and the reranker train their encoders without LoRA or the loss guard, and the reranker scores with its own
# encoder (no causal LM: `model`); the attribute model trains its float32 head on a float32 LM, whole.
NO_TRAINING = ("trainer", "optim", "peft", "loss_guard", "plan", "callbacks", "logger")
NOT_READ = {
    "retriever": ("data", "tokenizer", "peft", "loss_guard"),
    "reranker": ("data", "tokenizer", "peft", "loss_guard", "model"),
    # annotate rates with the attribute model at annotate.attribute_model, never the causal LM of `model`
    "annotate": ("tokenizer", "model", *NO_TRAINING),
    "bootstrap": NO_TRAINING,
    "tokenizer": NO_TRAINING,
    # modules/attribute_model.load_attribute_model builds the head model in float32 with transformers' attention
    "attribute_model": (
        "peft",
        "loss_guard",
        "model.dtype",
        "model.gradient_checkpointing",
        "model.attn_implementation",
    ),
}
# Sections a stage reads only in part: of each, the keys it reads (annotate and bootstrap format conversations
# with the data group's template; bootstrap steers in its attribute order).
READ_IN_PART = {
    "annotate": {"data": ("template",)},
    "bootstrap": {"data": ("template", "attributes.order")},
}
# Sections no stage's run is shaped by: the evaluations composed beside it (stage=annotate, sft).
NEVER_READ = ("eval",)
# Keys of a section never read whose values a stage's own keys take by interpolation (annotate.eda_eval_split,
# the SFT sources' eda split): compared there, and an override of them does change the run.
READ_THROUGH = ("eval.eda_script.eval_fraction",)
RESOURCES = "${chipadapt_resource:}"
# The installed package's resources folder as a run of another install recorded it (another checkout,
# release or virtual environment): a path ending in chipadapt/resources.
PACKAGE_RESOURCES = re.compile(r"[^\s'\"=,]*?/chipadapt/resources(?=/|$)")
# A folder is named where a path starts with it, at the start of a value or after what separates the words
# of a command line or list (space, quote, `=`, `,`), and only whole: ending there or at a `/`. Replaced as
# text anywhere, a short relative folder (`paths.shared_data=d`) renamed every other d (`dapt` read
# `${paths.shared_data}apt`, and a name already recorded was renamed inside), and the settings of the same
# run differed.
PATH_START = r"(?<![^\s'\"=,])"
FOLDER_END = r"(?![^\s'\"=,/])"


# Sections a stage reads only under some of its settings, with the test of when it reads them (`select`, a
# dotted lookup in the run's config): the retriever loads the causal LM of `model` only to write and judge
# synthetic questions (retriever.synthetic.method=llm without retriever.train_file), the rule by which
# loggers/wandb.models_used tags a run. Only the demand for a required key (config_schema.validate) reads it:
# `experiment=chipnemo_7b stage=retriever retriever.synthetic.method=ict` asked for model.path it never loads.
READ_WHEN = {
    "retriever": {
        "model": lambda select: select("retriever.synthetic.method") == "llm" and not select("retriever.train_file"),
    },
}


def is_unread_in_run(key: str, stage: object, select) -> bool:
    """is_unread, or `key` is in a section READ_WHEN says this run (`select(dotted_key)`) leaves unread."""
    if is_unread(key, stage):
        return True
    conditions = READ_WHEN.get(str(stage), {})
    return any(_within(key, section) and not reads(select) for section, reads in conditions.items())


def unread_sections(stage: object) -> tuple[str, ...]:
    """The sections and dotted keys stage `stage` (its stage.name) never reads, whole."""
    return (*NEVER_READ, *NOT_READ.get(str(stage), ()))


def _within(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def is_unread(key: str, stage: object) -> bool:
    """Whether stage `stage` never reads dotted `key` (a section, a group or a key inside one)."""
    if any(_within(key, unread) for unread in unread_sections(stage)):
        return True
    for section, read in READ_IN_PART.get(str(stage), {}).items():
        if key.startswith(section + "."):
            rest = key[len(section) + 1 :]
            # a key read, one inside it, or one holding it (`data.attributes` holds `attributes.order`)
            return not any(_within(rest, kept) or _within(kept, rest) for kept in read)
    return False


def named_folders(paths: dict | None) -> list[tuple[str, str]]:
    """(folder, name) for each of `paths`' folders and the installed package's resources folder, the
    longest first: a folder inside another is named by its own key."""
    # `cache/` and `cache` are one folder: named without the slash, `cache/models` is inside it.
    folders = [(str(value).rstrip("/") or "/", f"${{paths.{key}}}") for key, value in (paths or {}).items() if value]
    folders.append((str(resources.files("chipadapt") / "resources"), RESOURCES))
    return sorted(folders, key=lambda item: -len(item[0]))


def by_name(value: object, folders: list[tuple[str, str]]) -> object:
    """`value` with the folders in it named by their config key (strings, and strings in lists/dicts)."""
    if isinstance(value, str):
        for folder, name in folders:
            value = re.sub(PATH_START + re.escape(folder) + FOLDER_END, lambda _, name=name: name, value)
        return PACKAGE_RESOURCES.sub(lambda _: RESOURCES, value)
    if isinstance(value, list):
        return [by_name(item, folders) for item in value]
    if isinstance(value, dict):
        return {key: by_name(item, folders) for key, item in value.items()}
    return value


def without_unread(settings: dict, stage: object) -> dict:
    """Dotted `settings` without the sections `stage` never reads (a record of an earlier version kept them)."""
    return {key: value for key, value in settings.items() if not is_unread(key, stage)}


def run_settings(config: dict, stage: object, paths: dict | None) -> dict[str, object]:
    """Resolved `config` as dotted keys, without what `stage` never reads, its folders (`paths`) by name."""
    folders = named_folders(paths)
    return {key: by_name(value, folders) for key, value in flatten(config) if not is_unread(key, stage)}


# Values an earlier chipadapt recorded, and what stands for them now. adamw_cosine's scheduler was Hugging
# Face's (warm-up step i at lr i/w, the first at 0) and is chipadapt's ((i+1)/(w+1)): past the warm-up the
# two give the same lr at every step, so a run preempted under the earlier one resumes under the new one.
RENAMED_VALUES = {
    "transformers.get_cosine_schedule_with_warmup": "chipadapt.modules.lr_schedule.cosine_with_warmup",
}

# Keys a later chipadapt added, with what a run recorded without them did: a run of an earlier release is read
# at that meaning, so a key whose value keeps the earlier behaviour is no change, and one whose value does not
# is named with the override that gives the earlier behaviour back. tokenizer.adapt.held_out: tokens were
# chosen from every document, DAPT's held-out ones too, as with null now. tokenizer.adapt.stage names the
# stage it is built in, only to refuse stages that do not build one: the run's own stage.name. A merge
# (merge/job_settings.py) took its chat template and generation_config.json with the chip model's tokenizer
# files (no mergekit chat_template), and interpolated the non-float tensors that now need merge.non_float_from
# only where they differ.
# A chat source's group_by (any source name: `*` stands for one key segment): conversations were held out by
# their own id, as with null now (SFT, SteerLM, the attribute model's oasst_labelled), so a checkpoint of an
# earlier release reads as a version change and is given `data.sources.NAME.group_by=null` back.
ADDED_KEYS = {
    "tokenizer.adapt.held_out": lambda recorded: None,
    "tokenizer.adapt.stage": lambda recorded: recorded.get("stage.name"),
    "merge.chat_template_from": lambda recorded: "chip",
    "merge.chat_template": lambda recorded: None,
    "merge.non_float_from": lambda recorded: None,
    "data.sources.*.group_by": lambda recorded: None,
    "stage.datamodule.data.sources.*.group_by": lambda recorded: None,  # its copy in the stage's datamodule
}


def added_meaning(key: str):
    """The earlier meaning of `key` where a later chipadapt added it (ADDED_KEYS, `*` one segment), else None."""
    parts = key.split(".")
    for pattern, meaning in ADDED_KEYS.items():
        wanted = pattern.split(".")
        if len(wanted) == len(parts) and all(w in ("*", part) for w, part in zip(wanted, parts)):
            return meaning
    return None


def with_earlier_meanings(recorded: dict, current: dict) -> dict:
    """`recorded`, with each key of ADDED_KEYS that it lacks and `current` has read at its earlier meaning."""
    added = {
        key: meaning(recorded) for key in current if key not in recorded and (meaning := added_meaning(key)) is not None
    }
    return {**recorded, **added}


def version_changes(keys: list[str], recorded: dict, current: dict) -> dict[str, list[str]]:
    """Of the changed `keys`, those a change of chipadapt's version explains, by how: "retired" (a key of
    config_schema.RETIRED_KEYS that `recorded` has), "added" (a key of ADDED_KEYS that `recorded`, as the
    earlier run wrote it, before with_earlier_meanings, lacks), "renamed" (a value RENAMED_VALUES renamed to
    what `current` has). Any other key only one side has is the user's own change (a config group
    switched, a data source added)."""
    return {
        "retired": [key for key in keys if key in RETIRED_KEYS and key in recorded and key not in current],
        "added": [key for key in keys if added_meaning(key) is not None and key not in recorded],
        "renamed": [key for key in keys if RENAMED_VALUES.get(_text(recorded.get(key)), _MISSING) == current.get(key)],
    }


_MISSING = object()  # no renamed value: never equal to one of `current`'s


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# A value longer than this (its repr) is shown in part: a chat template is several KB on one line.
LONGEST_SHOWN = 100
SHOWN_PART = 60
BEFORE_DIFFERENCE = 20  # characters shown before where two long values first differ


def describe(keys: list[str], recorded: dict, current: dict) -> list[str]:
    """`a, b: old -> new`, one entry per change: a value copied under several keys is named once; a long
    value is cut to a part, from where it first differs from the other side, and its length."""
    by_change: dict[str, list[str]] = {}
    for key in keys:
        old, new = recorded.get(key), current.get(key)
        by_change.setdefault(f"{_shown(old, new)} -> {_shown(new, old)}", []).append(key)
    return [f"{', '.join(names)}: {change}" for change, names in by_change.items()]


def _shown(value, other) -> str:
    text = repr(value)
    if len(text) <= LONGEST_SHOWN:
        return text
    other_text = repr(other)
    same = next((i for i, (a, b) in enumerate(zip(text, other_text)) if a != b), min(len(text), len(other_text)))
    start = max(0, min(same - BEFORE_DIFFERENCE, len(text) - SHOWN_PART))
    size = len(value) if isinstance(value, str) else len(text)
    end = start + SHOWN_PART
    return f"{'...' if start else ''}{text[start:end]}{'...' if end < len(text) else ''} ({size} chars)"
