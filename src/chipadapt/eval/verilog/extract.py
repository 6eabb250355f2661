"""Pull the design's module definition (`TopModule` in VerilogEval) out of a model's reply."""

import re

FENCED = re.compile(r"```(?:verilog|systemverilog|sv|v)?\s*\n(.*?)(?:```|$)", re.S | re.I)


def module_pattern(name: str) -> re.Pattern:
    return re.compile(rf"\bmodule\s+{re.escape(name)}\b.*?\bendmodule\b", re.S)


def extract_module(reply: str, prompt_header: str | None = None, name: str = "TopModule") -> str:
    """The text of module `name`. In completion mode the reply continues `prompt_header` (the module's
    port list), so the header is put back in front and the body cut at its first `endmodule`."""
    if prompt_header is not None:
        body = reply.split("endmodule")[0]
        return f"{prompt_header.rstrip()}\n{body}\nendmodule\n"
    module = module_pattern(name)
    for block in FENCED.findall(reply) or [reply]:
        found = module.search(block)
        if found:
            return found.group(0) + "\n"
    found = module.search(reply)
    if found:
        return found.group(0) + "\n"
    blocks = FENCED.findall(reply)  # no complete module (cut off by max_new_tokens): the code, not the prose
    return blocks[0] if blocks else reply
