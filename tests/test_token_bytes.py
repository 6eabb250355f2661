from chipadapt.models.tiny import train_tiny_tokenizer
from chipadapt.models.token_bytes import token_byte_lengths

TEXT = "always_ff @(posedge clk_i) q <= d; // naïve café ✓\nset_clock_uncertainty 0.25"


def test_token_byte_lengths_add_up_to_the_utf8_length_of_the_text():
    tokenizer = train_tiny_tokenizer([TEXT] * 20, 400)
    lengths = token_byte_lengths(tokenizer, len(tokenizer) + 7)
    ids = tokenizer(TEXT, add_special_tokens=False).input_ids
    assert int(lengths[ids].sum()) == len(TEXT.encode("utf-8"))
    assert int(lengths[tokenizer.eos_token_id]) == 0  # markup, not text
    assert int(lengths[len(tokenizer) :].sum()) == 0  # padding rows
