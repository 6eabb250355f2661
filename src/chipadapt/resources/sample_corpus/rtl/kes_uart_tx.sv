// kes_uart_tx: UART transmitter, 8 data bits, optional parity, 1 or 2 stop bits.
// One tick_i pulse per bit time comes from the baud generator (16x oversampling / 16).
module kes_uart_tx (
  input  logic       clk_i,
  input  logic       rst_ni,
  input  logic       tick_i,
  input  logic [1:0] parity_i,   // 0: none, 1: even, 2: odd
  input  logic       stop2_i,
  input  logic       valid_i,
  output logic       ready_o,
  input  logic [7:0] data_i,
  output logic       tx_o,
  output logic       idle_o
);

  typedef enum logic [2:0] {Idle, Start, Data, Parity, Stop1, Stop2} state_e;
  state_e state_q, state_d;

  logic [7:0] shift_q, shift_d;
  logic [2:0] bit_q, bit_d;
  logic       par_q, par_d;
  logic       tx_d, tx_q;

  always_comb begin
    state_d = state_q;
    shift_d = shift_q;
    bit_d   = bit_q;
    par_d   = par_q;
    tx_d    = tx_q;
    unique case (state_q)
      Idle: begin
        tx_d = 1'b1;
        if (valid_i) begin
          shift_d = data_i;
          par_d   = (parity_i == 2'd2);  // odd parity starts from one
          state_d = Start;
        end
      end
      Start: if (tick_i) begin
        tx_d    = 1'b0;
        bit_d   = 3'd0;
        state_d = Data;
      end
      Data: if (tick_i) begin
        tx_d    = shift_q[0];
        par_d   = par_q ^ shift_q[0];
        shift_d = shift_q >> 1;
        bit_d   = bit_q + 3'd1;
        if (bit_q == 3'd7) state_d = (parity_i != 2'd0) ? Parity : Stop1;
      end
      Parity: if (tick_i) begin
        tx_d    = par_q;
        state_d = Stop1;
      end
      Stop1: if (tick_i) begin
        tx_d    = 1'b1;
        state_d = stop2_i ? Stop2 : Idle;
      end
      Stop2: if (tick_i) begin
        tx_d    = 1'b1;
        state_d = Idle;
      end
      default: state_d = Idle;
    endcase
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      state_q <= Idle;
      shift_q <= '0;
      bit_q   <= '0;
      par_q   <= 1'b0;
      tx_q    <= 1'b1;  // the line idles high
    end else begin
      state_q <= state_d;
      shift_q <= shift_d;
      bit_q   <= bit_d;
      par_q   <= par_d;
      tx_q    <= tx_d;
    end
  end

  assign ready_o = (state_q == Idle);
  assign idle_o  = (state_q == Idle);
  assign tx_o    = tx_q;

endmodule
