"""`eval=verilog` on benchmarks of the second shape: a description plus a self-checking testbench that
instantiates the design by its own name and prints its verdict (eval/verilog/self_checking.py)."""

import json
import re
import shutil

import pytest
from conftest import CONF, ROOT, write_jsonl
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import OmegaConf

needs_iverilog = pytest.mark.skipif(
    not (shutil.which("iverilog") and shutil.which("vvp")),
    reason="iverilog not installed (apt-get install -y iverilog)",
)
SHIPPED = ROOT / "src/chipadapt/resources/rtl_selfcheck/tasks.jsonl"


@pytest.fixture
def shape():
    """The shape with the shipped default patterns (conf/verilog_shape/self_checking.yaml)."""
    from hydra.utils import instantiate

    return instantiate(OmegaConf.load(CONF / "verilog_shape" / "self_checking.yaml"))


def shipped_tasks() -> list[dict]:
    return [json.loads(line) for line in SHIPPED.read_text().splitlines()]


def ports_only(reference: str) -> str:
    """The reference's header with an empty body: compiles, drives nothing (every output X or Z)."""
    return re.search(r"\bmodule\b.*?\);", reference, re.S).group(0) + "\nendmodule\n"


def test_the_design_is_the_module_the_testbench_instantiates_but_nobody_defines():
    from chipadapt.eval.verilog.hdl_scan import defined_modules, instantiated_modules

    testbench = """
    module helper(input a); endmodule
    module tb;
      reg [3:0] x; wire y; integer errors;
      // counter old (.clk(clk));   a comment is not an instance
      fifo #(.DEPTH(8), .W(WIDTH(2))) dut (.x(x), .y(y));
      helper h [1:0] (.a(x[1:0]));
      and g1 (y, x[0], x[1]);
      task check(input v); begin if (v) errors = errors + 1; end endtask
      initial begin $display("model inst (x)"); check(y); repeat (2) @(posedge y); end
    endmodule
    """
    assert instantiated_modules(testbench) == ["fifo", "helper"]
    assert defined_modules(testbench) == ["helper", "tb"]


def test_verdicts_read_pass_texts_error_counts_and_failure_reports(shape):
    verdicts = {
        "TEST PASSED": True,
        "Errors: 0\nTEST PASSED": True,
        "Mismatches: 0 in 64 samples": True,  # a zero count alone is a clean report
        "0 errors, 12 checks": True,
        "No errors found. All tests pass.": True,
        "===========Your Design Passed===========": True,
        "Passed: 10, Failed: 0": True,
        "Errors: 3\nTEST FAILED": False,
        "ERROR: cycle 7: rd_data=aa, expected 55\nAll tests passed": False,  # a failure outweighs a pass text
        "===========Test completed with 2 failures===========": False,
        "Mismatches: 5 in 64 samples": False,
        "FATAL: assertion failed at 30 ns": False,
    }
    for output, passed in verdicts.items():
        result = shape.verdict(output)
        assert (result.passed, result.stage) == (passed, "ok"), output
    silent = shape.verdict("cycle 10: q=3\n")
    assert not silent.passed and silent.stage == "simulate" and "no verdict" in silent.detail
    assert not shape.verdict("TEST PASSED", returncode=1).passed  # the simulator itself failed ($fatal, crash)


def test_custom_patterns_and_bad_task_files_are_clear_errors(tmp_path):
    from chipadapt.errors import ChipadaptError
    from chipadapt.eval.verilog.self_checking import SelfCheckingShape

    custom = SelfCheckingShape(pass_pattern=r"^OK$", fail_pattern=r"^BAD (\d+)")
    assert (
        custom.verdict("OK\n").passed and custom.verdict("BAD 0\n").passed and not custom.verdict("BAD 2\nOK\n").passed
    )
    with pytest.raises(ChipadaptError, match="fail_pattern.*not a regular expression"):
        SelfCheckingShape(pass_pattern="ok", fail_pattern="(unclosed")

    two_designs = "module tb; alu a0 (.x(1'b0)); regfile r0 (.x(1'b0)); endmodule\n"
    path = write_jsonl(tmp_path / "t.jsonl", [{"task_id": "t", "prompt": "p", "test": two_designs}])
    with pytest.raises(ChipadaptError, match=r"instantiates \['alu', 'regfile'\].*\"module\""):
        custom.read(path)
    write_jsonl(path, [{"task_id": "t", "prompt": "p", "test": two_designs, "module": "alu", "sources": ["regfile.v"]}])
    with pytest.raises(ChipadaptError, match="source file regfile.v does not exist"):
        custom.read(path)
    (tmp_path / "regfile.v").write_text("module regfile(input x); endmodule\n")
    write_jsonl(path, [{"task_id": "t", "prompt": "p", "test": two_designs, "sources": ["regfile.v"]}])
    task = custom.read(path)[0]  # the extra source defines regfile, so the design is alu
    assert (task["module"], task["testbench_tops"], list(task["source_files"])) == ("alu", ["tb"], ["regfile.v"])
    with pytest.raises(ChipadaptError, match="no reference solution"):
        custom.reference(task)


@needs_iverilog
def test_shipped_references_pass_through_the_config_and_empty_designs_fail(shape):
    """The references-only check (like VerilogEval's 153/156), built from the config as a user runs it;
    then every testbench must reject a design that drives nothing, and a few plausible wrong designs."""
    from chipadapt.eval.run import evaluate_folder

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(
            "evaluate",
            overrides=[
                "eval=[verilog]",
                "verilog_shape@eval.verilog.shape=self_checking",
                f"eval.verilog.path={SHIPPED}",
                "eval.verilog.references_only=true",
            ],
        )
    results = evaluate_folder(None, cfg.eval, "cpu", None, "float32", "sdpa", False)["verilog"]  # no model is loaded
    assert results["tasks"] == len(shipped_tasks()) >= 5 and results["passed_tasks"] == results["tasks"]

    tasks = {t["task_id"]: t for t in shape.read(SHIPPED)}
    for task in tasks.values():
        assert not shape.simulate(task, ports_only(task["ref"]), 20).passed, task["task_id"]
    wrong = {
        "gray_counter": tasks["gray_counter"]["ref"].replace("count ^ (count >> 1)", "count"),  # binary, not Gray
        "seq_detect_1011": tasks["seq_detect_1011"]["ref"].replace(
            "history <= {history[1:0], din};",  # forgets overlaps
            "history <= ({history, din} == 4'b1011) ? 3'b000 : {history[1:0], din};",
        ),
        "sync_fifo": tasks["sync_fifo"]["ref"].replace("(wr_ptr[3] != rd_ptr[3])", "(wr_ptr[3] == rd_ptr[3])"),
        "adder8": tasks["adder8"]["ref"].replace("assign cout = carry[8];", "assign cout = carry[7];"),
    }
    for task_id, code in wrong.items():
        assert code != tasks[task_id]["ref"]
        result = shape.simulate(tasks[task_id], code, 20)
        assert not result.passed and result.stage == "ok", (task_id, result)


@needs_iverilog
def test_a_model_is_asked_for_the_testbenchs_module_and_its_reply_compiled_with_the_extra_sources(
    shape, monkeypatch, tmp_path
):
    import chipadapt.eval.tasks.verilog as verilog_task

    tasks = {t["task_id"]: t for t in shipped_tasks()}
    shutil.copytree(SHIPPED.parent / "files", tmp_path / "files")  # sources are found beside the task file
    path = write_jsonl(tmp_path / "tasks.jsonl", [tasks["adder8"], tasks["mux4"]])
    asked = []

    def reply(model, tokenizer, prompts, *args, **kwargs):
        asked.extend(prompts)
        # adder8: its reference inside a chat reply (it compiles only with files/full_adder.v and reads the vectors);
        # mux4: a module of another name, which the testbench cannot find
        return [
            f"Here you go:\n```verilog\n{tasks['adder8']['ref']}```\nIt uses full_adder.",
            f"```verilog\n{tasks['mux4']['ref'].replace('module mux4', 'module mux')}```",
        ]

    monkeypatch.setattr(verilog_task, "generate", reply)
    task = verilog_task.VerilogTask(str(path), "chat", None, 64, 2, 1, 0.0, 1.0, [1], 20, 1, False, shape)
    results = task.run(model=None, tokenizer=None)
    assert "complete module named adder8" in asked[0] and "complete module named mux4" in asked[1]
    assert results["tasks"] == 2 and results["passed_tasks"] == 1 and results["compile_errors"] == 1
