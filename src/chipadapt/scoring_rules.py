"""The marks a run's records carry of how its figures were scored, where an earlier version scored them
another way. compare.py pairs two runs only where their marks agree (eval/same_items.py SCORING_RULE,
eval/compare_validation.py), and a resumed training drops a starting validation read by another rule
(stages/common.py validation_settings). Defined once here: data/, eval/ and stages/ write and read them.
"""

# Every token of a document is predicted, its first after a document start (evaluate.py's perplexity: the
# bos, else eos token; training validation: model.doc_separator, or the row before). Before, the first
# token was context only, its bytes out of the figure.
FIRST_TOKEN, FIRST_TOKEN_SCORED = "first_token", "scored"
# A token's bytes are its piece's own UTF-8 bytes (models/token_bytes.py): a SentencePiece `▁` is a space,
# `<0xC3>` one byte. Before, the piece was decoded alone, which dropped the space of `▁The` and made a byte
# piece the 3 bytes of U+FFFD: Llama-2-style tokenizers' bits per byte were off by about 15%.
BYTE_COUNT, BYTE_COUNT_PIECES = "byte_count", "piece_utf8"
# And, of a tokenizer that prepends a space to a text (Llama-2's dummy prefix), without that space: no byte
# of the document. Before, training validation counted it, one byte a document, and so did evaluate.py's
# perplexity before 8089a3e under the same BYTE_COUNT_PIECES. A tokenizer that prepends nothing (Gemma's)
# counts as under BYTE_COUNT_PIECES and keeps that mark, as does validation of other rows than packed
# documents (SFT's conversations: stages/common.py validation_settings), which is counted as before.
BYTE_COUNT_NO_ADDED_SPACE = "piece_utf8_no_added_space"
