"""VerilogEval-style RTL generation: prompt, extract the module, simulate with Icarus Verilog."""
