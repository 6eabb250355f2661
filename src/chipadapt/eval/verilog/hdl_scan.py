"""Which modules a Verilog/SystemVerilog text defines and which it instantiates.

Enough of a scanner to read a testbench: it finds `module NAME` definitions and instantiations
`NAME [#(...)] INSTANCE [range] (`, after removing comments and string literals (so text a testbench
prints is never taken for code). Keywords and gate primitives that share the instantiation shape
(`if (`, `and g1 (`) are not modules.
"""

import re

COMMENTS_AND_STRINGS = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', re.S)
DEFINITION = re.compile(r"\b(?:module|macromodule|interface|program)\s+(?:automatic\s+|static\s+)?([A-Za-z_]\w*)")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
# Words that can stand where a module name would and be followed by an identifier and "(".
NOT_MODULES = frozenset(
    """
always always_comb always_ff always_latch and assert assign assume automatic begin buf bufif0 bufif1 case casex casez
cmos cover default defparam disable else end endcase endfunction endmodule endtask for forever fork function generate
genvar if initial inout input integer join join_any join_none localparam logic module nand negedge nmos nor not notif0
notif1 or output parameter pmos posedge pulldown pullup rcmos real realtime reg repeat return rnmos rpmos rtran
rtranif0 rtranif1 signed static supply0 supply1 task time tran tranif0 tranif1 tri tri0 tri1 triand trior unsigned
wait while wire wor xnor xor bit byte int shortint longint string var void typedef struct enum union packed const
ref import export extern virtual class new this super property sequence covergroup coverpoint
""".split()
)


def strip_comments_and_strings(text: str) -> str:
    # Strings become "" and comments a space, so positions of the code around them stay apart.
    return COMMENTS_AND_STRINGS.sub(lambda m: '""' if m.group(0).startswith('"') else " ", text)


def defined_modules(text: str) -> list[str]:
    return DEFINITION.findall(strip_comments_and_strings(text))


def _skip_space(code: str, i: int) -> int:
    while i < len(code) and code[i].isspace():
        i += 1
    return i


def _skip_balanced(code: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket group that starts at code[i] == open_ (or len(code) if unbalanced)."""
    depth = 0
    for j in range(i, len(code)):
        depth += (code[j] == open_) - (code[j] == close)
        if depth == 0:
            return j + 1
    return len(code)


def instantiated_modules(text: str) -> list[str]:
    """Module names instantiated in `text`, in order of first appearance."""
    code = strip_comments_and_strings(text)
    found: list[str] = []
    for match in IDENTIFIER.finditer(code):
        name = match.group(0)
        start = match.start()
        if name in NOT_MODULES or (
            start and (code[start - 1] in "$`.'\\" or code[start - 1].isalnum() or code[start - 1] == "_")
        ):
            continue  # system tasks, macros, hierarchical names, casts
        i = _skip_space(code, match.end())
        if code.startswith("#", i):  # parameter override: #(...) or #N
            i = _skip_space(code, i + 1)
            if code.startswith("(", i):
                i = _skip_balanced(code, i, "(", ")")
            else:
                number = re.match(r"[\w.']+", code[i:])
                i += number.end() if number else 0
            i = _skip_space(code, i)
        instance = IDENTIFIER.match(code, i)
        if not instance or instance.group(0) in NOT_MODULES:
            continue
        i = _skip_space(code, instance.end())
        while code.startswith("[", i):  # an array of instances
            i = _skip_space(code, _skip_balanced(code, i, "[", "]"))
        if code.startswith("(", i) and name not in found:
            found.append(name)
    return found


# The system tasks that print: what they print lands in the output a self-checking verdict is read from
# ($info/$warning/$error/$fatal print their message after a severity prefix: "INFO: t.sv:3: TEST PASSED").
PRINT_CALL = re.compile(r"\$(?:f?(?:display|write|strobe|monitor)[bho]?|info|warning|error|fatal)\s*\(")
MACRO_DEFINITION = re.compile(r"^[ \t]*`define[ \t]+([A-Za-z_]\w*)[ \t]+([^\n]*)", re.M)
MACRO_USE = re.compile(r"`([A-Za-z_]\w*)")
STRING = re.compile(r'"((?:\\.|[^"\\\n])*)"')


def printed_strings(text: str, macros: str = "") -> list[str]:
    """What each print call in `text` prints of its string arguments: each string alone and all of them
    joined (`$display("TEST ", "PASSED")` prints "TEST PASSED"). A `` `NAME `` argument is replaced by
    its `` `define `` in `text` or `macros` (a macro is defined for the whole compilation unit). A
    reader of the literal text only: a string built at run time ($sformatf, a parameter) is not seen."""
    defined = dict(MACRO_DEFINITION.findall(macros + "\n" + text))
    code = _without_comments(text)
    printed = []
    for call in PRINT_CALL.finditer(code):
        args = code[call.end() - 1 : _skip_balanced_code(code, call.end() - 1)]
        strings = _strings(MACRO_USE.sub(lambda m: defined.get(m.group(1), m.group(0)), args))
        printed += strings + (["".join(strings)] if len(strings) > 1 else [])
    return printed


def string_literals(text: str, macros: str = "") -> list[str]:
    """Every string literal of `text` outside comments, `` `NAME `` uses replaced by their `` `define ``
    (in `text` or `macros`): one assigned to a variable can still be printed (`m = "..."; $display(m)`)."""
    defined = dict(MACRO_DEFINITION.findall(macros + "\n" + text))
    return _strings(MACRO_USE.sub(lambda m: defined.get(m.group(1), m.group(0)), _without_comments(text)))


def _without_comments(text: str) -> str:
    return COMMENTS_AND_STRINGS.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", text)


def _strings(code: str) -> list[str]:
    return [s.replace("\\n", "\n").replace("\\t", "\t") for s in STRING.findall(code)]


def _skip_balanced_code(code: str, i: int) -> int:
    """Index just past the parenthesis group at code[i] == "(", its string literals skipped."""
    depth = 0
    while i < len(code):
        literal = STRING.match(code, i)
        if literal:
            i = literal.end()
            continue
        depth += (code[i] == "(") - (code[i] == ")")
        i += 1
        if depth == 0:
            return i
    return len(code)
