"""Which kind of tokenizer the base model has, and how its text splits into BPE words.

Two families can be extended with merges (extend.py):
- byte-level BPE (GPT-2 style: SmolLM2, Llama-3, Qwen): text is mapped to 256 printable stand-ins
  for bytes and pre-tokenized by a regex; the pre-tokens are the words BPE works within;
- SentencePiece-style BPE (Llama-2, Mistral, Gemma): spaces become `▁` (by a Metaspace
  pre-tokenizer or a Replace normalizer), characters outside the vocabulary fall back to `<0xNN>`
  byte tokens, and BPE runs over the whole text (no pre-tokenizer split). Its vocabulary never
  joins a non-space character with a following `▁`, so a run of `▁` plus the characters up to the
  next `▁` is the unit BPE works within: the same words, and the same counts, as the whole text.
Unigram (T5, XLM-R), WordPiece (BERT) and WordLevel tokenizers have no merge list to extend.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from chipadapt.errors import ChipadaptError

METASPACE = "▁"
SUPPORTED = (
    "byte-level BPE (SmolLM2, Llama-3, Qwen) and SentencePiece-style BPE with byte fallback and "
    f"'{METASPACE}' word markers (Llama-2, Mistral, Gemma)"
)


def _components(component) -> list[str]:
    """Type names of a normalizer / pre-tokenizer / decoder, looking inside Sequence."""
    if component is None:
        return []

    def walk(node) -> list[str]:
        names = [node.get("type", "")]
        for key in ("normalizers", "pretokenizers", "decoders"):
            for child in node.get(key) or []:
                names += walk(child)
        return names

    return walk(json.loads(component.__getstate__()))


@dataclass
class TokenizerFamily:
    name: str  # "byte_level" or "sentencepiece"
    normalizer: object
    word_splitter: object  # a tokenizers PreTokenizer whose pieces are BPE's words

    def words(self, text: str) -> list[str]:
        if self.normalizer is not None:
            text = self.normalizer.normalize_str(text)
        return [piece for piece, _ in self.word_splitter.pre_tokenize_str(text)]

    def train_domain_vocab(self, texts: Iterable[str], vocab_size: int) -> list[str]:
        """Vocabulary of a BPE trained from scratch on `texts`, split into words as the base splits
        them and written in the base's alphabet (byte stand-ins or `▁`-text)."""
        trainee = Tokenizer(models.BPE())
        trainee.normalizer = self.normalizer
        trainee.pre_tokenizer = self.word_splitter
        alphabet = pre_tokenizers.ByteLevel.alphabet() if self.name == "byte_level" else []
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
        trainee.train_from_iterator(texts, trainer=trainer)
        vocab = trainee.get_vocab()
        return sorted(vocab, key=vocab.get)  # in id order: get_vocab() is a hash map, its order varies per run


def tokenizer_family(backend: Tokenizer, where: str = "tokenizer") -> TokenizerFamily:
    """The family of a `tokenizers` backend, or a one-line error naming what is supported."""
    kind = type(backend.model).__name__
    if kind != "BPE":
        raise ChipadaptError(f"{where}: a {kind} tokenizer cannot be extended; supported: {SUPPORTED}")
    if backend.model.continuing_subword_prefix or backend.model.end_of_word_suffix:
        raise ChipadaptError(f"{where}: BPE with subword prefixes/suffixes cannot be extended; supported: {SUPPORTED}")
    pre, norm, dec = _components(backend.pre_tokenizer), _components(backend.normalizer), _components(backend.decoder)
    if "ByteLevel" in pre:
        return TokenizerFamily("byte_level", backend.normalizer, backend.pre_tokenizer)
    if "Metaspace" in pre or "Metaspace" in dec or ("Replace" in norm and "Replace" in dec):
        # Runs of `▁` stay with the word after them (indentation pieces like `▁▁▁` exist).
        split = pre_tokenizers.Split(Regex(f"{METASPACE}*[^{METASPACE}]+|{METASPACE}+"), behavior="isolated")
        splitter = pre_tokenizers.Sequence([backend.pre_tokenizer, split]) if backend.pre_tokenizer else split
        return TokenizerFamily("sentencepiece", backend.normalizer, splitter)
    raise ChipadaptError(
        f"{where}: a BPE tokenizer that is neither byte-level nor '{METASPACE}'-based; supported: {SUPPORTED}"
    )
