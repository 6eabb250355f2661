"""Pull the `TopModule` definition out of a model's reply."""

import re

FENCED = re.compile(r"```(?:verilog|systemverilog|sv|v)?\s*\n(.*?)(?:```|$)", re.S | re.I)
MODULE = re.compile(r"\bmodule\s+TopModule\b.*?\bendmodule\b", re.S)


def extract_module(reply: str, prompt_header: str | None = None) -> str:
    """The TopModule text. In completion mode the reply continues `prompt_header` (the module's
    port list), so the header is put back in front and the body cut at its first `endmodule`."""
    if prompt_header is not None:
        body = reply.split("endmodule")[0]
        return f"{prompt_header.rstrip()}\n{body}\nendmodule\n"
    for block in FENCED.findall(reply) or [reply]:
        found = MODULE.search(block)
        if found:
            return found.group(0) + "\n"
    found = MODULE.search(reply)
    if found:
        return found.group(0) + "\n"
    blocks = FENCED.findall(reply)  # no complete module (cut off by max_new_tokens): the code, not the prose
    return blocks[0] if blocks else reply
