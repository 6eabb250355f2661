"""eval=verilog as an RTL engineer's trial found it: verdict words read inside phrases and zero counts
read as failures, helper modules dropped from replies, bad worker/timeout settings, a printing hang held
in memory, a description naming another module, and items without the model's reply."""

import logging
import shutil
import sys
import time

import pytest
from conftest import CONF, write_jsonl
from omegaconf import OmegaConf

from chipadapt.errors import ChipadaptError

needs_iverilog = pytest.mark.skipif(
    not (shutil.which("iverilog") and shutil.which("vvp")),
    reason="iverilog not installed (apt-get install -y iverilog)",
)

AND2_TB = """module tb; reg a,b; wire y; integer i, err=0;
  and2 dut(.a(a),.b(b),.y(y));
  initial begin for(i=0;i<4;i=i+1) begin {a,b}=i; #1; if (y!==(a&b)) err=err+1; end
  if (err==0) $display("TEST PASSED"); else $display("TEST FAILED: %0d", err); $finish; end
endmodule
"""
AND2 = "module and2(input a, input b, output y); my_and u(.a(a), .b(b), .y(y)); endmodule"
MY_AND = "module my_and(input a, input b, output y); assign y = a & b; endmodule"


@pytest.fixture
def shape():
    from hydra.utils import instantiate

    return instantiate(OmegaConf.load(CONF / "verilog_shape" / "self_checking.yaml"))


# (output, passed): None is "no verdict" (stage simulate)
VERDICTS = {
    # words inside other phrases, zero and short pass counts are no pass
    "Testing pass-through buffer": None,
    "pass rate 12%": None,
    "bypass enabled\ndata passed to the next stage": None,
    "Test not passed": None,
    "Passed 0 of 8 checks": False,
    "passed: 0/8": False,
    "Passed 7 of 8 checks": False,
    "7/8 tests passed": False,
    "TESTS=0 PASS=0 FAIL=0": False,
    # zero counts of a failure word are clean
    "8 passed, 0 failed": True,
    "Tests: 8 passed, 0 failed": True,
    "0 tests failed": True,
    "** TESTS=8 PASS=8 FAIL=0 SKIP=0 **": True,
    "===========Test completed with 0 / 100 failures===========\n===========Your Design Passed===========": True,
    "Hint: Output 'y' has no mismatches.\nMismatches: 0 in 64 samples": True,
    # common verdict lines
    "All tests passed": True,
    "TEST PASSED at time 100": True,
    "Result: PASS": True,
    "[PASS] test_add": True,
    "Test 0 passed\nTest 1 passed": True,
    "8/8 tests passed": True,
    "Errors: 0\nTEST PASSED": True,
    "Testing error-correcting code\nTEST PASSED": True,
    # failures
    "TESTS=8 PASS=7 FAIL=1": False,
    "Test 0 failed\nTest 1 passed": False,
    "Error: 0 expected 1\nTEST PASSED": False,  # a value, not a count
    "at time 0 the check failed\nTEST PASSED": False,
    "ERROR: tb.sv:5: assertion\nAll tests passed": False,
    "Hint: Output 'y' has 5 mismatches. First mismatch occurred at time 10.\nMismatches: 5 in 64 samples": False,
    # a number after a word other than all/with/have/found/... is an index, not a count
    "Iteration 0 failed\nIteration 1 passed": False,
    "Lane 0 FAILED\nTEST PASSED": False,
    "Bit 0 mismatch\nTEST PASSED": False,
    "Sample 0 passed\nSample 1 passed": True,
    "Packet 3 of 8 passed": True,
    "Frame 3/8 passed": True,
    "Simulation done with 0 errors\nFound 0 mismatches\nTEST PASSED": True,
    "8 passed and 0 failed": True,
    "Lanes 1 and 2 failed": False,
    "Overall: PASS (0 errors)": True,
    "10 tests, 1 failure": False,
    # the count after the word is the word's own
    "PASS: 10 FAIL: 0": True,
    "Passed: 10 Failed: 0": True,
    "Pass 10 Fail 0": True,
    "Tests: 10  Errors: 0": True,
    "PASS: 10 FAIL: 1": False,
    # after a singular word a number followed by more text is a value
    "Error: 0, expected 1\nTEST PASSED": False,
    "ERROR: 0 (expected 1)\nTEST PASSED": False,
    "ERROR: 0 got=1\nTEST PASSED": False,
    "Mismatch: 0 actual=1\nTEST PASSED": False,
    "Errors: 0\nMismatches: 0 in 64 samples": True,
    "Error(s): 0": True,
    # UVM's report counts; its warnings are no failure
    "UVM_INFO :   12\nUVM_WARNING :    3\nUVM_ERROR :    0\nUVM_FATAL :    0": True,
    "UVM_ERROR :    2\n** TEST PASSED **": False,
    "UVM_FATAL @ 0: reporter [NOCOMP] No components instantiated": False,
    "pass_count=8 fail_count=0": True,
    "Running test: fail_safe_mode\nAll tests passed": True,
    # counts with thousands separators are one number, not the digits after a comma
    "Passed 1,023 of 1,024 vectors": False,
    "Passed: 999/1,000": False,
    "1,023 / 1,024 tests passed": False,
    "Total: 1,000 tests, 1,000 passed, 0 failed": True,
    "1,000 vectors passed": True,
    "Errors: 1,024": False,
    "1" * 5000 + " tests passed": True,  # longer than int() reads
    # a count after a plural and detected/found/is/tests
    "Errors detected: 0": True,
    "Errors found: 0": True,
    "Number of errors detected: 0": True,
    "Failed tests: 0": True,
    "FAILED tests: 0": True,
    "Error count is 0": True,
    "Errors detected: 2": False,
    "Error count is 3": False,
    # a bracketed tally after PASS
    "PASS (7/8)": False,
    "PASS (8/8)": True,
}


def test_verdict_words_count_only_as_verdicts_and_zero_counts_are_clean(shape):
    for output, expected in VERDICTS.items():
        result = shape.verdict(output)
        if expected is None:
            assert (result.passed, result.stage) == (False, "simulate"), output
        else:
            assert (result.passed, result.stage) == (expected, "ok"), (output, result)


@pytest.mark.parametrize(
    "shape_of",
    [
        lambda n: "error count" + " " * n + "x",
        lambda n: "pass 1" + " " * n + "x",
        lambda n: "error" + " " * n + "x",
        lambda n: "PASS:" + " " * n + "1" + " " * n + "x",
        lambda n: "Errors detected" + " " * n + "x",
        lambda n: "8" + " " * n + "tests" + " " * n + "x",
        lambda n: "PASS (" + "1" * n + "x",
    ],
)
def test_reading_a_long_run_of_spaces_takes_linear_time(shape, shape_of):
    # Verdict reading has no time limit; a pattern that splits a run of spaces several ways took
    # 52 CPU-s for one 64 KB line (and hours for 1 MB).
    text = shape_of(1 << 16)
    start = time.process_time()
    shape.verdict(text)
    shape._verdict_line(text)
    assert time.process_time() - start < 2


def test_a_candidate_that_prints_a_pass_itself_is_refused_but_its_own_testbench_is_not(shape, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"task_id": "and2", "prompt": "a module named and2", "test": AND2_TB}])
    [task] = shape.read(path)
    gaming = AND2.replace("endmodule", 'initial $display("TEST PASSED"); endmodule') + "\n" + MY_AND
    result = shape.simulate(task, gaming, 5)  # refused before any simulation
    assert (result.passed, result.stage) == (False, "refused") and "TEST PASSED" in result.detail
    gaming_helper = AND2 + "\n" + MY_AND.replace("endmodule", 'initial $display("All tests passed"); endmodule')
    assert shape.simulate(task, gaming_helper, 5).stage == "refused"
    own_testbench = f'{AND2}\n{MY_AND}\nmodule tb_mine; initial $display("PASS"); endmodule\n'
    assert shape._printed_verdict(own_testbench, "and2") is None  # never a root of the simulation


@pytest.mark.parametrize(
    ("code", "refused"),
    [
        # messages about the design, and strings it never prints, are not verdicts
        ('initial $display("parity check passed");', False),
        ('initial $display("ECC: 0 errors corrected");', False),
        ('parameter MODE = "BYPASS";', False),
        ('// $display("TEST PASSED");', False),
        # a verdict line, however it is spelled out in the source
        ('initial $info("TEST PASSED");', True),  # iverilog prints "INFO: t.sv:1: TEST PASSED"
        ('initial $warning("All tests passed");', True),
        # a string literal that is a verdict line is printable from a variable
        ('reg [8*11:1] m; initial begin m = "TEST PASSED"; $display("%0s", m); end', True),
        ('parameter MODE = "PASS";', True),
        ('initial $display("TEST PASSED");', True),
        ('initial $display("TEST ", "PASSED");', True),
        ("initial $display(`MSG);", True),
        ('initial $write("Errors: 0\\n");', True),
        ('initial $display("All %0d tests passed at time %0t", 8, $time);', True),
    ],
)
def test_only_a_verdict_line_the_candidate_prints_is_refused(shape, code, refused):
    candidate = '`define MSG "TEST PASSED"\n' + AND2.replace("endmodule", f"{code}\nendmodule") + "\n" + MY_AND
    assert (shape._printed_verdict(candidate, "and2") is not None) == refused


def test_a_description_naming_another_module_is_warned_about(shape, tmp_path, caplog):
    tb = AND2_TB.replace("and2 dut", "xor2 dut")
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"task_id": "named_other", "prompt": "Implement a module named xor_gate with inputs a, b.", "test": tb},
            {"task_id": "same", "prompt": "Implement a module named and2 using the inc module.", "test": AND2_TB},
        ],
    )
    with caplog.at_level(logging.WARNING):
        tasks = shape.read(path)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [t["module"] for t in tasks] == ["xor2", "and2"]
    assert len(warned) == 1 and "named_other" in warned[0] and "xor_gate" in warned[0] and "xor2" in warned[0]


def test_helper_modules_the_reply_defines_are_kept_and_the_harness_modules_dropped():
    from chipadapt.eval.verilog.extract import extract_module

    reply = f"Here:\n```verilog\n`timescale 1ns/1ps\n{MY_AND}\n\n{AND2}\nmodule tb; endmodule\n```\nThat is all."
    code = extract_module(reply, None, "and2", frozenset({"tb"}))
    assert "module my_and" in code and "module and2" in code and "`timescale" in code
    assert "module tb" not in code and "That is all" not in code
    # a helper given in a second block is added; a second copy of a name is not
    split = f"```verilog\n{AND2}\n```\nand the gate:\n```verilog\n{MY_AND}\n{AND2.replace('a & b', 'a | b')}\n```"
    code = extract_module(split, None, "and2")
    assert code.count("module my_and") == 1 and code.count("module and2") == 1
    # no code block: the module definitions, not the prose
    code = extract_module(f"Sure. {AND2}\n{MY_AND}\nHope this helps.", None, "and2")
    assert "module my_and" in code and "Sure" not in code and "Hope" not in code
    # "module" in prose or a comment is no definition
    code = extract_module(f"Here is a module that implements the AND gate:\n{AND2}\n{MY_AND}\n", None, "and2")
    assert code.startswith("module and2") and "implements" not in code
    commented = f"```verilog\n// This module tb-free and self-contained\n{AND2}\n{MY_AND}\nmodule tb; endmodule\n```"
    code = extract_module(commented, None, "and2", frozenset({"tb"}))
    assert "module and2" in code and "module my_and" in code and "module tb;" not in code

    # completion mode: the design ends at its first endmodule; of the rest, what it instantiates
    completed = extract_module(
        "  my_and u(.a(a), .b(b), .y(y));\nendmodule\nmodule my_and(input a, input b, output y);\n"
        "  assign y = a & b;\nendmodule\nmodule unrelated; endmodule\nAnd now a poem.",
        prompt_header="module and2(input a, input b, output y);",
        name="and2",
    )
    assert completed.count("endmodule") == 2 and "module my_and" in completed
    assert "unrelated" not in completed and "poem" not in completed


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("workers", 0, r"^eval.verilog.workers: 0 is not a whole number >= 1"),
        ("timeout_s", -1, r"^eval.verilog.timeout_s: -1 must be a number of seconds > 0"),
        ("timeout_s", 0, r"^eval.verilog.timeout_s: 0 must be"),
    ],
)
def test_workers_and_timeout_are_refused_naming_the_key(key, value, message, shape):
    from chipadapt.eval.tasks.verilog import VerilogTask

    settings = dict(
        path="t.jsonl",
        mode="chat",
        limit=None,
        max_new_tokens=8,
        batch_size=1,
        samples=1,
        temperature=0.0,
        top_p=1.0,
        ks=[1],
        timeout_s=30,
        workers=4,
        references_only=False,
        shape=shape,
    )
    with pytest.raises(ChipadaptError, match=message):
        VerilogTask(**{**settings, key: value})


def test_what_a_run_prints_is_capped_and_a_timeout_says_its_limit_and_last_lines(tmp_path, monkeypatch):
    import chipadapt.eval.verilog.simulate as simulate

    monkeypatch.setattr(simulate, "MAX_OUTPUT_BYTES", 1 << 16)
    flood = [sys.executable, "-c", "while True: print('cycle q=0 ' + '.' * 60, flush=True)"]
    output, returncode, cut = simulate._run_capped(flood, tmp_path, 30)
    assert cut and len(output) <= 1 << 16 and output.startswith("cycle q=0")  # killed at the cap, not the timeout
    slow = [sys.executable, "-c", "import time; print('first'); print('last', flush=True); time.sleep(30)"]
    output, returncode, cut = simulate._run_capped(slow, tmp_path, 1)
    assert (returncode, cut) == (None, False) and "last" in output

    monkeypatch.setattr(simulate, "_run_capped", lambda cmd, work, timeout_s: ("a\n" * 500 + "cycle 99\n", None, False))
    result = simulate.compile_and_run(tmp_path, ["x.sv"], ["tb"], 7)
    assert result.stage == "timeout" and "compile" in result.detail and "7 s" in result.detail
    assert result.detail.rstrip().endswith("cycle 99") and len(result.detail) < 800


@needs_iverilog
def test_a_compile_that_runs_past_the_timeout_is_stopped_with_its_compiler(tmp_path):
    import chipadapt.eval.verilog.simulate as simulate

    # ivl, iverilog's child, elaborates this for minutes; it held the pipe after iverilog was killed
    (tmp_path / "c.sv").write_text(
        "module tff(input clk, output reg q = 0); genvar i;\n"
        "generate for (i = 0; i < 200000000; i = i + 1) begin: g wire w; end endgenerate\n"
        "always @(posedge clk) q <= ~q; endmodule\n"
    )
    start = time.monotonic()
    output, returncode, cut = simulate._run_capped(["iverilog", "-g2012", "-o", "sim", "c.sv"], tmp_path, 1)
    assert returncode is None and not cut and time.monotonic() - start < 4
    # its temporary files are in the task's folder (removed with it), not left in /tmp by the kill
    assert list(tmp_path.glob("ivrl*"))


@needs_iverilog
def test_a_hang_that_keeps_printing_is_stopped_and_said_to_be_cut(shape, tmp_path, monkeypatch):
    import chipadapt.eval.verilog.simulate as simulate

    monkeypatch.setattr(simulate, "MAX_OUTPUT_BYTES", 1 << 16)
    tb = """module tb; reg clk=0; wire q; tff dut(.clk(clk),.q(q));
  always #1 clk = ~clk;
  always @(posedge clk) $display("cycle q=%b ......................................................", q);
endmodule
"""
    path = write_jsonl(tmp_path / "t.jsonl", [{"task_id": "hang_loud", "prompt": "tff", "test": tb}])
    [task] = shape.read(path)
    code = "module tff(input clk, output reg q = 0); always @(posedge clk) q <= ~q; endmodule\n"
    result = shape.simulate(task, code, 60)
    assert (result.passed, result.stage) == (False, "simulate")
    assert "output cut" in result.detail and "cycle q=" in result.detail


def test_items_keep_the_prompt_and_raw_reply_and_counts_say_what_they_count(shape, tmp_path, monkeypatch):
    import chipadapt.eval.tasks.verilog as verilog_task
    from chipadapt.eval.verilog.simulate import SimResult

    monkeypatch.setattr(verilog_task, "require_iverilog", lambda: None)
    path = write_jsonl(tmp_path / "t.jsonl", [{"task_id": "and2", "prompt": "a module named and2", "test": AND2_TB}])
    reply = f"Sure:\n```verilog\n{AND2}\n{MY_AND}\nmodule tb; endmodule\n```"
    monkeypatch.setattr(verilog_task, "generate", lambda *args, **kwargs: [reply])
    compiled = []
    monkeypatch.setattr(
        shape, "simulate", lambda task, code, timeout_s: compiled.append(code) or SimResult(False, "compile", "x")
    )
    task = verilog_task.VerilogTask(str(path), "chat", None, 64, 1, 1, 0.0, 1.0, [1], 20, 1, False, shape)
    results = task.run(model=None, tokenizer=None)
    [item] = task.items
    assert item["reply"] == [reply] and "complete module named and2" in item["prompt"]
    assert "module my_and" in item["prediction"][0] and "module tb" not in compiled[0]  # the testbench's own name
    assert (results["simulations"], results["compile_errors"], results["refused"]) == (1, 1, 0)
