// kes_timer: 32-bit up-counter with 8-bit prescaler, compare match and auto-reload.
module kes_timer (
  input  logic        clk_i,
  input  logic        rst_ni,
  input  logic        en_i,
  input  logic        auto_reload_i,
  input  logic [7:0]  prescale_i,
  input  logic        count_we_i,
  input  logic [31:0] count_wdata_i,
  input  logic [31:0] cmp_i,
  output logic [31:0] count_o,
  output logic        match_o      // one-cycle pulse; the register block latches INTR_STATE
);

  logic [7:0]  pre_q;
  logic [31:0] count_q;
  wire tick = en_i && (pre_q == prescale_i);
  // Compare before the increment: the pulse comes in the cycle the counter shows CMP.
  wire hit  = tick && (count_q == cmp_i);

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      pre_q   <= '0;
      count_q <= '0;
    end else begin
      if (!en_i || tick) pre_q <= '0;
      else               pre_q <= pre_q + 8'd1;

      if (count_we_i)              count_q <= count_wdata_i;
      else if (hit && auto_reload_i) count_q <= '0;
      else if (tick)               count_q <= count_q + 32'd1;
    end
  end

  assign count_o = count_q;
  assign match_o = hit;

endmodule
