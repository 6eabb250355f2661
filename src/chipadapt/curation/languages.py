"""What language a file is in: by extension first, then by content for files without a telling one."""

import re
from pathlib import PurePath

EXTENSIONS = {
    ".v": "verilog",
    ".vh": "verilog",
    ".vg": "verilog",
    ".vo": "verilog",
    ".sv": "systemverilog",
    ".svh": "systemverilog",
    ".vhd": "vhdl",
    ".vhdl": "vhdl",
    ".sp": "spice",
    ".spi": "spice",
    ".spice": "spice",
    ".cir": "spice",
    ".cdl": "spice",
    ".ckt": "spice",
    ".lib": "liberty",
    ".liberty": "liberty",
    ".sdc": "sdc",
    ".xdc": "sdc",
    ".tcl": "tcl",
    ".ys": "yosys",
    ".py": "python",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".mk": "make",
    ".make": "make",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".hjson": "json",
    ".toml": "toml",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".txt": "text",
    ".log": "text",
    ".sh": "shell",
    ".bash": "shell",
    ".lef": "lef",
    ".def": "def",
}
NAMES = {"makefile": "make", "gnumakefile": "make", "readme": "text", "license": "text", "copying": "text"}

# Content signatures, tried in order on the first few KB of files the extension does not decide.
_SNIFFERS = [
    ("html", re.compile(r"^\s*(<!doctype html|<html)", re.I)),
    ("shell", re.compile(r"^#!.*\b(ba|z)?sh\b")),
    ("python", re.compile(r"^#!.*python")),
    ("tcl", re.compile(r"^#!.*(tclsh|openroad|wish)")),
    ("liberty", re.compile(r"^\s*library\s*\(\s*\w+\s*\)\s*\{", re.M)),
    ("systemverilog", re.compile(r"^\s*(module|interface|package)\s+\w+.*(logic|always_ff|always_comb)", re.M | re.S)),
    ("verilog", re.compile(r"^\s*module\s+\w+\s*[#(;]", re.M)),
    ("vhdl", re.compile(r"^\s*entity\s+\w+\s+is\b", re.M | re.I)),
    ("spice", re.compile(r"^\s*\.(subckt|ends|include|param)\b", re.M | re.I)),
    ("sdc", re.compile(r"^\s*(create_clock|set_input_delay|set_output_delay)\b", re.M)),
    ("make", re.compile(r"^[\w.-]+\s*:(?!=).*\n\t", re.M)),
    ("markdown", re.compile(r"^#{1,6}\s+\S", re.M)),
]
SNIFF_BYTES = 4096


def language_of(path: str, head: str | None) -> str:
    """head: the start of the decoded text (None for binary formats decided by extension)."""
    p = PurePath(path)
    suffix = p.suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if p.name.lower() in NAMES:
        return NAMES[p.name.lower()]
    if head:
        for lang, pattern in _SNIFFERS:
            if pattern.search(head[:SNIFF_BYTES]):
                return lang
    return "text"


BINARY_FORMATS = {"pdf", "docx", "pptx"}
