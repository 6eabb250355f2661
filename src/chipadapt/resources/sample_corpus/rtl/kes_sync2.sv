// kes_sync2: two-flop synchronizer for single-bit level signals crossing clock domains.
// Never use it for multi-bit buses: bits may land in different cycles. Use a handshake FIFO.
module kes_sync2 #(
  parameter logic ResetValue = 1'b0
) (
  input  logic clk_i,
  input  logic rst_ni,
  input  logic d_i,
  output logic q_o
);

  (* dont_touch = "true" *) logic meta_q, sync_q;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      meta_q <= ResetValue;
      sync_q <= ResetValue;
    end else begin
      meta_q <= d_i;
      sync_q <= meta_q;
    end
  end

  assign q_o = sync_q;

endmodule
