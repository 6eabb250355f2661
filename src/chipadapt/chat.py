"""An interactive engineering assistant in the terminal: streamed replies, optional RAG and SteerLM
attributes. Commands inside the chat: /reset, /attributes quality:4,humor:0, /sources, /quit."""

import logging
import sys
import threading

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import TextIteratorStreamer

from chipadapt.data.chat_templates import attribute_string
from chipadapt.errors import ChipadaptError
from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer, resolve_model_folder
from chipadapt.quiet import silence_known_noise

log = logging.getLogger(__name__)


def parse_attributes(text: str) -> dict[str, float]:
    """`quality:4,humor:0` -> {"quality": 4.0, "humor": 0.0}; a bad item names itself."""
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition(":")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ChipadaptError(f"attributes: {item!r} is not name:value (e.g. quality:4,humor:0)") from None
        if not sep:
            raise ChipadaptError(f"attributes: {item!r} is not name:value (e.g. quality:4,humor:0)")
    return out


class ChatSession:
    def __init__(self, cfg: DictConfig):
        folder = resolve_model_folder(cfg.model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_causal_lm(folder, "bfloat16" if device == "cuda" else "float32", "sdpa").to(device).eval()
        self.tokenizer = load_tokenizer(folder)
        self.template = instantiate(cfg.template)(tokenizer=self.tokenizer)
        self.cfg = cfg
        self.attributes = parse_attributes(cfg.generate.attributes) if cfg.generate.attributes else {}
        self.order = list(cfg.attribute_order)
        self.messages: list[dict] = []
        self.last_sources: list[str] = []
        self.retriever = self.passages = None
        if cfg.get("retrieval"):
            from chipadapt.retrieval.build import load_passages, make_retrievers

            r = OmegaConf.to_container(cfg.retrieval, resolve=True)
            passages = load_passages(r.get("passages"), r["build"])
            self.retriever = make_retrievers(r.get("encoders"), r["dense"], r.get("bm25"), r.get("hybrid"))[r["use"]]
            self.retriever.index(passages)
            self.passages = {p.id: p for p in passages}

    def user_turn(self, text: str) -> dict:
        """The user's message, with retrieved passages in front of it when a retriever is configured."""
        if self.retriever is None:
            return {"role": "user", "content": text}
        from chipadapt.retrieval.rag import rag_prompt

        hits = self.retriever.search([text], self.cfg.retrieval.top_k)[0]
        prompt, used = rag_prompt(text, [self.passages[pid] for pid, _ in hits], self.tokenizer, self.cfg.retrieval.budget_tokens)
        self.last_sources = [self.passages[pid].source or pid for pid in used]
        return {"role": "user", "content": prompt}

    @torch.no_grad()
    def reply(self, text: str, out=sys.stdout) -> str:
        turn = self.user_turn(text)
        prompt = self.template.prompt(self.messages + [turn], attribute_string(self.attributes, self.order))
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        g = self.cfg.generate
        sampling = {"do_sample": True, "temperature": g.temperature, "top_p": g.top_p} if g.temperature > 0 else {"do_sample": False}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        worker = threading.Thread(target=self.model.generate, kwargs=dict(**encoded, max_new_tokens=g.max_new_tokens, pad_token_id=pad,
                                                                            streamer=streamer, **sampling))
        worker.start()
        pieces = []
        for piece in streamer:
            pieces.append(piece)
            out.write(piece)
            out.flush()
        worker.join()
        out.write("\n")
        answer = "".join(pieces).strip()
        # The history keeps the plain question: retrieved passages are for the turn they were found for.
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        return answer


def run(cfg: DictConfig) -> None:
    silence_known_noise()
    session = ChatSession(cfg)
    rag = " with retrieval" if session.retriever else ""
    print(f"chipadapt chat: {cfg.model.path or cfg.model.name}{rag}. /reset /attributes k:v,... /sources /quit", flush=True)
    for line in sys.stdin if not sys.stdin.isatty() else iter(lambda: input("you> "), None):
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            session.messages = []
            print("(history cleared)")
            continue
        if line.startswith("/attributes"):
            session.attributes = parse_attributes(line[len("/attributes"):])
            print(f"(attributes: {attribute_string(session.attributes, session.order) or 'none'})")
            continue
        if line == "/sources":
            print("\n".join(session.last_sources) or "(no retrieval for the last answer)")
            continue
        print("assistant> ", end="", flush=True)
        session.reply(line)
