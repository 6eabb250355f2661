"""stage=annotate and stage=bootstrap keep their work when interrupted: a Ctrl-C after an hour of rating
kept nothing ("nothing was published, a rerun ... starts over"). Each rating and sampled reply is now
journaled as it completes (steerlm/progress_journal.py), a rerun with the same settings makes only the
rest, and one with other settings starts afresh. Bootstrap's prompts are fitted to the model's context
as chat.py fits its history: they ran past it (transformers: "exceeded the model's predefined maximum
length")."""

import pytest
from helpers.models import tiny_llama
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_chipnemo_turn_end import ROOT

from chipadapt.steerlm.generate import sample_with_attributes
from chipadapt.steerlm.progress_journal import journal_path, progress_journal
from chipadapt.steerlm.rating import AttributeRater

CONVERSATIONS = [
    [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}] for i in range(6)
]


def annotate_cfg(limit=None):
    return OmegaConf.create(
        {"annotate": {"limit": limit, "batch_size": 2}, "data": {"template": {"_target_": "some.Template"}}}
    )


class CountingRater(AttributeRater):
    """The rater's batching and journal, with a stand-in for the attribute model."""

    def __init__(self, stop_after: int | None = None):
        self.batch_size, self.rated, self.rated_calls, self.stop_after = 2, ["quality"], [], stop_after

    def _rate(self, conversations):
        if self.stop_after is not None and len(self.rated_calls) == self.stop_after:
            raise KeyboardInterrupt  # the Ctrl-C
        self.rated_calls.append(len(conversations))
        return [{"quality": float(len(c[0]["content"]))} for c in conversations]


def test_an_interrupted_annotation_keeps_its_ratings_and_rates_only_the_rest(tmp_path):
    model = tmp_path / "attr"
    model.mkdir()
    (model / "config.json").write_text("{}")
    first = CountingRater(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        first.rate(CONVERSATIONS, progress_journal(annotate_cfg(), tmp_path, "annotate", {"attribute_model": model}))
    assert first.rated_calls == [2, 2] and journal_path(tmp_path, "annotate").is_file()

    rerun = CountingRater()
    journal = progress_journal(annotate_cfg(), tmp_path, "annotate", {"attribute_model": model})
    ratings = rerun.rate(CONVERSATIONS, journal)
    assert rerun.rated_calls == [2]  # the 4 ratings made before the interruption are not made again
    assert ratings == CountingRater()._rate(CONVERSATIONS)

    # Other settings (or another attribute model, input or code): the journal is not theirs.
    other = CountingRater()
    other.rate(CONVERSATIONS, progress_journal(annotate_cfg(limit=5), tmp_path, "annotate", {"attribute_model": model}))
    assert other.rated_calls == [2, 2, 2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"), num_layers=1, max_position_embeddings=256)


@pytest.fixture(scope="module")
def model_and_tokenizer(folder):
    from transformers import AutoModelForCausalLM

    from chipadapt.models.hf_folder import load_tokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), load_tokenizer(folder)


def chipnemo(tokenizer):
    template = OmegaConf.load(ROOT / "conf/data/template/chipnemo.yaml")
    template.default_system = ""
    return instantiate(template)(tokenizer=tokenizer)


class Watched:
    """The model, with the widths it was asked to generate over."""

    def __init__(self, model):
        self.model, self.config, self.device = model, model.config, model.device
        self.generation_config, self.calls = model.generation_config, []

    def generate(self, **kwargs):
        self.calls.append((kwargs["input_ids"].shape, kwargs["max_new_tokens"]))
        return self.model.generate(**kwargs)


def test_bootstrap_replies_are_journaled_and_reused(tmp_path, model_and_tokenizer, folder):
    model, tok = model_and_tokenizer
    cfg = OmegaConf.create({"bootstrap": {"limit": 2}, "data": {"template": {"_target_": "x"}}})
    prompts, settings = [[m[0]] for m in CONVERSATIONS[:2]], [{"quality": 4}, {"quality": 0}]
    args = (prompts, settings, ["quality"], 1, 4, 0.0, 2)
    journal = progress_journal(cfg, tmp_path, "bootstrap", {"model": folder})
    first, _ = sample_with_attributes(Watched(model), tok, chipnemo(tok), *args, journal)
    journal.close()
    again = Watched(model)
    replies, _ = sample_with_attributes(
        again, tok, chipnemo(tok), *args, progress_journal(cfg, tmp_path, "bootstrap", {"model": folder})
    )
    assert replies == first and again.calls == []  # every reply came from the journal


def test_bootstrap_prompts_are_fitted_to_the_model_context(model_and_tokenizer):
    model, tok = model_and_tokenizer
    long_turn = "timing closure " * 12
    history = [
        {"role": "user", "content": long_turn},
        {"role": "assistant", "content": long_turn},
        {"role": "user", "content": "And hold?"},
    ]
    too_long = [{"role": "user", "content": "setup slack " * 40}]
    watched = Watched(model)
    replies, counts = sample_with_attributes(
        watched, tok, chipnemo(tok), [history, too_long, history[-1:]], [{"quality": 4}], ["quality"], 1, 16, 0.0, 1
    )
    assert counts == {"prompts_cut": 1, "prompts_too_long": 1, "system_too_long": 0}
    assert len(replies[0]) == 1 and replies[1] == [] and len(replies[2]) == 1
    # Before: the whole history, past the 256 positions the model has.
    assert all(shape[1] + new <= 256 for shape, new in watched.calls)
