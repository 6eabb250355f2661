// kes_apb_decoder: selects one of eight 4 KiB peripheral slots at 0x4000_0000 and returns
// PSLVERR with zero read data for unmapped addresses.
module kes_apb_decoder (
  input  logic [31:0] paddr_i,
  input  logic        psel_i,
  output logic [7:0]  psel_o,
  input  logic [31:0] prdata_i [8],
  input  logic [7:0]  pready_i,
  input  logic [7:0]  pslverr_i,
  output logic [31:0] prdata_o,
  output logic        pready_o,
  output logic        pslverr_o
);

  wire       in_range = (paddr_i[31:15] == 17'h0_8000);  // 0x4000_0000 .. 0x4000_7FFF
  wire [2:0] slot     = paddr_i[14:12];

  always_comb begin
    psel_o    = '0;
    prdata_o  = '0;
    pready_o  = 1'b1;
    pslverr_o = 1'b0;
    if (psel_i) begin
      if (in_range) begin
        psel_o[slot] = 1'b1;
        prdata_o     = prdata_i[slot];
        pready_o     = pready_i[slot];
        pslverr_o    = pslverr_i[slot];
      end else begin
        pslverr_o = 1'b1;
      end
    end
  end

endmodule
