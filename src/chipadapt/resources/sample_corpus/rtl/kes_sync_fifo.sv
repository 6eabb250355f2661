// kes_sync_fifo: synchronous FIFO, power-of-two depth, first-word fall-through.
// Kestrel KST-100 sample RTL (fictional chip).
module kes_sync_fifo #(
  parameter int Width = 8,
  parameter int Depth = 16,
  localparam int PtrW = $clog2(Depth)
) (
  input  logic             clk_i,
  input  logic             rst_ni,
  input  logic             clr_i,     // synchronous clear, drops every entry
  input  logic             wvalid_i,
  output logic             wready_o,
  input  logic [Width-1:0] wdata_i,
  output logic             rvalid_o,
  input  logic             rready_i,
  output logic [Width-1:0] rdata_o,
  output logic [PtrW:0]    depth_o
);

  logic [Width-1:0] storage [Depth];
  // One extra pointer bit tells a full FIFO from an empty one when the indices are equal.
  logic [PtrW:0] wptr_q, rptr_q;

  wire full  = (wptr_q[PtrW] != rptr_q[PtrW]) && (wptr_q[PtrW-1:0] == rptr_q[PtrW-1:0]);
  wire empty = (wptr_q == rptr_q);
  wire push  = wvalid_i && !full;
  wire pop   = rready_i && !empty;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      wptr_q <= '0;
      rptr_q <= '0;
    end else if (clr_i) begin
      wptr_q <= '0;
      rptr_q <= '0;
    end else begin
      if (push) wptr_q <= wptr_q + 1'b1;
      if (pop)  rptr_q <= rptr_q + 1'b1;
    end
  end

  always_ff @(posedge clk_i) begin
    if (push) storage[wptr_q[PtrW-1:0]] <= wdata_i;
  end

  assign wready_o = !full;
  assign rvalid_o = !empty;
  assign rdata_o  = storage[rptr_q[PtrW-1:0]];
  assign depth_o  = wptr_q - rptr_q;

endmodule
