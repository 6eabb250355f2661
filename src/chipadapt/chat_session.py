"""chat.py's conversation with the model: the model, template and optional retriever loaded once,
the history fitted to the model's context, and each reply streamed from a worker thread that Ctrl-C
stops at its next token (the turn is then not kept)."""

import contextlib
import logging
import signal
import sys
import threading

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from chipadapt.chat_attributes import parse_attributes, unfamiliar_attributes
from chipadapt.chat_checks import check_attribute_record
from chipadapt.data.chat_templates import attribute_string
from chipadapt.errors import ChipadaptError
from chipadapt.models.context_fit import earliest_kept, reply_room, reply_tokens
from chipadapt.models.hf_folder import resolve_model_folder
from chipadapt.models.inference import load_for_inference
from chipadapt.models.text_generation import stop_token_ids
from chipadapt.steerlm.attribute_record import recorded_attribute_order
from chipadapt.steerlm.steering_template import named_on_command_line, steering_template

log = logging.getLogger(__name__)


class StopFlag(StoppingCriteria):
    """Set from the main thread on Ctrl-C; generate() checks it after every token."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def ctrl_c_sets(event: threading.Event):
    """While inside, the first SIGINT sets `event` rather than raising; a second one raises
    KeyboardInterrupt as usual (the way out when generate() is stuck, e.g. in a long prefill).
    Outside the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first_press(signum, frame) -> None:
        event.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first_press)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


class ChatSession:
    def __init__(self, cfg: DictConfig):
        # Attributes for a model that records no SteerLM format are refused before its weights load (as
        # evaluate.py checks the folder first), and before the template: its reason is the one to say.
        self.folder = resolve_model_folder(cfg.model)
        if cfg.generate.attributes:
            check_attribute_record(self.folder, "generate.attributes")
        loaded = load_for_inference(self.folder, cfg.model.dtype, cfg.model.attn_implementation)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        # A SteerLM model is prompted in the template its folder records it was trained in; another one named
        # on the command line is refused (steerlm/steering_template.py).
        template = steering_template(
            OmegaConf.to_container(cfg.template, resolve=True),
            self.folder,
            "template",
            named_on_command_line("data/template", "template"),
            refuse=True,
        )
        self.template = instantiate(template)(tokenizer=self.tokenizer)
        self.cfg = cfg
        # generate.system_prompt: the system turn of every prompt (None: the template's default one).
        self.system = cfg.generate.get("system_prompt")
        self.attributes = parse_attributes(cfg.generate.attributes) if cfg.generate.attributes else {}
        # A SteerLM model's folder records the order its training wrote the attribute strings in, the one
        # order the model knows; attributes are refused for a folder without it, so none is needed else.
        self.order = recorded_attribute_order(self.folder) or []
        if note := unfamiliar_attributes(self.attributes, self.order):
            log.warning("generate.attributes: %s; a SteerLM model has never seen it", note)
        self.messages: list[dict] = []
        # The model's context: a prompt and its reply past it are positions the model never saw.
        self.context = getattr(self.model.config, "max_position_embeddings", None)
        self.window = 0  # the first message of the history the prompt still holds (earlier ones no longer fit)
        self.reply_attributes: list[dict] = []  # the attributes each assistant message was generated under
        self.last_sources: list[str] = []  # ids of the passages in the last prompt, in rank order
        self.last_retrieved: list[str] = []  # ids the retriever returned for it (top_k; some may not fit)
        self.retriever = self.passages = None
        if cfg.get("retrieval"):
            from chipadapt.retrieval.build import (
                check_index_dir,
                chosen_retriever,
                load_passages,
                make_retrievers,
                retrieval_inputs,
            )

            r = OmegaConf.to_container(cfg.retrieval, resolve=True)
            # retrieval.index_dir: the dense index is kept there and reused by the next session over the
            # same passages and encoder (as evaluate.py's retrieval tasks keep theirs).
            inputs = retrieval_inputs("retrieval", r.get("passages"), r.get("build"), r.get("encoders"), r.get("bm25"))
            check_index_dir(r.get("index_dir"), "retrieval.index_dir", [*inputs, ("model.path", str(self.folder))])
            passages = load_passages(r.get("passages"), r["build"], "retrieval.build")
            retrievers = make_retrievers(
                r.get("encoders"), r["dense"], r.get("bm25"), r.get("hybrid"), index_root=r.get("index_dir")
            )
            self.retriever = chosen_retriever(retrievers, r["use"], "retrieval.use")
            self.retriever.index(passages)
            self.passages = {p.id: p for p in passages}
        # Once, before the first question: otherwise each question would be refused, or its passages cut,
        # with nothing saying the cause is the configuration (as bootstrap warns of its prompts).
        if warning := self.context_warning():
            log.warning("%s", warning)

    def context_warning(self) -> str | None:
        """What of the configured prompt is longer than the model's context leaves beside the reply: the system
        prompt (no question can be asked), or it with retrieval.budget_tokens of passages (they are cut)."""
        if self.context is None:
            return None
        kept, asked = self.reply_room(), int(self.cfg.generate.max_new_tokens)
        room = self.context - kept
        system = "generate.system_prompt" if self.with_system([]) else "the template's own text (its system prompt)"
        beside = f"tokens the model's context of {self.context} leaves beside a reply"
        if kept < asked:  # the room is then half the context's, and a lower max_new_tokens helps only below it
            fits = f"{beside} (half the context, {kept} tokens: generate.max_new_tokens={asked} asks for more)"
            lower = f"generate.max_new_tokens below {kept}"
        else:
            fits, lower = f"{beside} (generate.max_new_tokens={asked})", "generate.max_new_tokens"
        alone = self.prompt_tokens([{"role": "user", "content": ""}])
        if alone > room:
            # A shorter reply helps only where the prompt alone leaves the context room for one.
            helps = f" (or lower generate.max_new_tokens below {self.context - alone})" if alone < self.context else ""
            return (
                f"{system} takes {alone} prompt tokens, more than the {room} {fits}: every question will be refused; "
                f"shorten it{helps}"
            )
        if self.retriever is None:
            return None
        from chipadapt.retrieval.rag import RAG_TEMPLATE

        budget, top_k = int(self.cfg.retrieval.budget_tokens), int(self.cfg.retrieval.top_k)
        frame = self.prompt_tokens([{"role": "user", "content": RAG_TEMPLATE.format(context="", question="")}])
        # As passage_budget counts them: a few tokens a passage for its "[n] (source)" line.
        with_passages = frame + budget + 8 * top_k
        if with_passages <= room:
            return None
        return (
            f"{system} with retrieval.budget_tokens={budget} of passages (top_k={top_k}) takes {with_passages} "
            f"prompt tokens, more than the {room} {fits}: the passages will be cut to at most "
            f"{max(0, room - frame - 8 * top_k)} tokens (fewer for a longer question); lower retrieval.budget_tokens "
            f"or {lower}, or shorten the system prompt"
        )

    def user_turn(self, text: str) -> dict:
        """The user's message, with retrieved passages in front of it when a retriever is configured."""
        if self.retriever is None:
            return {"role": "user", "content": text}
        from chipadapt.retrieval.rag import rag_prompt

        hits = self.retriever.search([text], self.cfg.retrieval.top_k)[0]
        prompt, used = rag_prompt(
            text, [self.passages[pid] for pid, _ in hits], self.tokenizer, self.passage_budget(text)
        )
        self.last_retrieved, self.last_sources = [pid for pid, _ in hits], used
        return {"role": "user", "content": prompt}

    def with_system(self, messages: list[dict]) -> list[dict]:
        """The messages behind generate.system_prompt's system turn, when it is set."""
        system = getattr(self, "system", None)
        return ([{"role": "system", "content": system}] if system is not None else []) + messages

    def prompt_text(self, messages: list[dict]) -> str:
        return self.template.prompt(self.with_system(messages), attribute_string(self.attributes, self.order))

    def prompt_tokens(self, messages: list[dict]) -> int:
        prompt = self.prompt_text(messages)
        return len(self.tokenizer(prompt, add_special_tokens=False).input_ids)

    def passage_budget(self, text: str) -> int:
        """retrieval.budget_tokens, or less where the model's context has no room for it beside the question,
        the prompt's own text and the reply (SmolLM2 has 8,192 positions; a 2k-context model has not)."""
        from chipadapt.retrieval.rag import RAG_TEMPLATE

        budget = int(self.cfg.retrieval.budget_tokens)
        if self.context is None:
            return budget
        question = [{"role": "user", "content": RAG_TEMPLATE.format(context="", question=text)}]
        # A few tokens a passage for its "[n] (source)" line and the blank lines between passages.
        room = self.context - self.reply_room() - self.prompt_tokens(question)
        self.last_budget = max(0, min(budget, room - 8 * int(self.cfg.retrieval.top_k)))
        return self.last_budget

    def reply_room(self) -> int:
        """The positions kept for the reply: generate.max_new_tokens, or half the context where that asks
        for more (a reply then stops at the context's end: `reply_tokens`)."""
        return reply_room(self.context, int(self.cfg.generate.max_new_tokens))

    def reply_tokens(self, prompt_tokens: int) -> int:
        """generate.max_new_tokens, cut to the positions the context has left after the prompt."""
        return reply_tokens(self.context, int(self.cfg.generate.max_new_tokens), prompt_tokens)

    def fitted_history(self, turn: dict, out) -> list[dict]:
        """The history the prompt holds with `turn`: the earliest turns left out, with a note, while the
        prompt and generate.max_new_tokens would run past the model's context; an error when `turn`
        alone does."""
        self.next_window = self.window
        if self.context is None:
            return self.messages + [turn]
        room = self.context - self.reply_room()
        needed = self.prompt_tokens([turn])
        if needed >= self.context:  # no reply length makes room for it
            raise ChipadaptError(
                f"this question is {needed} prompt tokens for the model's context of {self.context} tokens, which "
                "leaves no room for a reply: ask it shorter"
            )
        if needed > room:  # before any turn is left out: the history stays as it was for the next question
            raise ChipadaptError(
                f"this question takes {needed} prompt tokens, which leaves fewer than {self.reply_room()} of the "
                f"model's context of {self.context} tokens for the reply: ask it shorter, or lower "
                "generate.max_new_tokens"
            )
        # A user turn and its reply at a time (models/context_fit.py, as bootstrap fits its prompts).
        window = earliest_kept(self.messages, lambda kept: self.prompt_tokens(kept + [turn]), room, self.window)
        if window > self.window:  # said when more are left out; the count is of all left out so far
            out.write(
                f"(the {window // 2} earliest turn(s) no longer fit the model's context of "
                f"{self.context} tokens and are left out of the prompt; /reset starts afresh)\n"
            )
        # Kept once this turn is (a reply stopped by Ctrl-C is not): then the next prompts start there too.
        self.next_window = window
        return self.messages[window:] + [turn]

    def reset(self) -> None:
        self.messages, self.reply_attributes, self.window = [], [], 0

    def source_lines(self) -> list[str]:
        """/sources: one line per passage of the last prompt, its id and where it comes from (its
        document title and section path, else its source document), so that two passages of one
        document can be told apart."""
        lines = []
        for rank, pid in enumerate(self.last_sources, start=1):
            where = self.passages[pid].context or self.passages[pid].source
            lines.append(f"[{rank}] {pid}" + (f"  ({where})" if where else ""))
        return lines

    def sources_record(self) -> str:
        """chat.log's line for the last retrieval: the ids in the prompt, then those cut by the budget."""
        cut = [pid for pid in self.last_retrieved if pid not in self.last_sources]
        budget = int(self.cfg.retrieval.budget_tokens)
        limit = getattr(self, "last_budget", budget)
        over = "retrieval.budget_tokens" if limit >= budget else f"the {limit} tokens the model's context leaves"
        note = f"; retrieved but over {over}: {', '.join(cut)}" if cut else ""
        return f"sources: {', '.join(self.last_sources) or '(none fit)'}{note}"

    @torch.no_grad()
    def reply(self, text: str, out=sys.stdout) -> str | None:
        """Stream the answer to `text`; None when Ctrl-C stopped it (the turn is then not kept)."""
        turn = self.user_turn(text)
        prompt = self.prompt_text(self.fitted_history(turn, out))
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        prompt_length = None if self.context is None else encoded.input_ids.shape[1]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        g = self.cfg.generate
        sampling = (
            {"do_sample": True, "temperature": g.temperature, "top_p": g.top_p}
            if g.temperature > 0
            else {"do_sample": False}
        )
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        stop = StopFlag()
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                self.model.generate(
                    **encoded,
                    max_new_tokens=g.max_new_tokens if self.context is None else self.reply_tokens(prompt_length),
                    pad_token_id=pad,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([stop]),
                    eos_token_id=stop_token_ids(self.model, self.tokenizer),
                    **sampling,
                )
            except BaseException as err:  # re-raised in the main thread
                failure.append(err)
            finally:
                # The loop below ends on this whatever happened; streamer.end() is no help when the
                # streamer's own decode is what failed. A second stop signal after end()'s is harmless.
                streamer.text_queue.put(streamer.stop_signal)

        # A daemon: a worker stuck in generate() must not keep the process alive after a second Ctrl-C.
        worker = threading.Thread(target=generate, daemon=True)
        pieces = []
        # Ctrl-C sets the stop flag instead of raising KeyboardInterrupt: an exception raised at an
        # arbitrary point of the streamer's queue.get() can leave its lock half released
        # ("RuntimeError: release unlocked lock"). The loop then drains the streamer, which ends once
        # generate() has stopped at its next token.
        with ctrl_c_sets(stop.event):
            worker.start()
            try:
                for piece in streamer:
                    if stop.event.is_set():
                        continue
                    pieces.append(piece)
                    out.write(piece)
                    out.flush()
            except BaseException:  # the terminal went away, or a second Ctrl-C: stop generating
                stop.event.set()
                raise
            stopped = stop.event.is_set()  # a Ctrl-C during the join below comes after the whole reply
            worker.join()
        if failure:
            raise failure[0]
        if stopped:
            out.write("\n(reply stopped; not kept in the history)\n")
            out.flush()
            return None
        out.write("\n")
        answer = "".join(pieces).strip()
        # The history keeps the plain question: retrieved passages are for the turn they were found for.
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        self.window = self.next_window
        self.reply_attributes.append(dict(self.attributes))
        return answer
