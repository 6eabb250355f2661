# Kestrel KST-100 timing constraints (fictional).
create_clock -name clk_sys -period 10.4 [get_ports clk_sys_i]
create_generated_clock -name clk_apb -source [get_ports clk_sys_i] -divide_by 2 [get_pins u_clkdiv/clk_o]
create_clock -name clk_aon -period 30517.6 [get_ports clk_aon_i]

# clk_aon is asynchronous to the rest; crossings go through kes_sync2 or handshake FIFOs.
set_clock_groups -asynchronous -group {clk_sys clk_apb} -group {clk_aon}

# clk_apb is divided from clk_sys with a fixed phase: APB-to-AHB paths get two clk_sys cycles.
set_multicycle_path 2 -setup -from [get_clocks clk_apb] -to [get_clocks clk_sys]
set_multicycle_path 1 -hold  -from [get_clocks clk_apb] -to [get_clocks clk_sys]

set_clock_uncertainty -setup 0.25 [all_clocks]
set_clock_uncertainty -hold 0.05 [all_clocks]
set_input_delay  3.0 -clock clk_apb [get_ports {uart*_rx_i spi_miso_i gpio_i[*]}]
set_output_delay 3.0 -clock clk_apb [get_ports {uart*_tx_o spi_mosi_o spi_sck_o gpio_o[*]}]
set_false_path -from [get_ports rst_por_ni]
set_max_transition 0.8 [current_design]
set_load 0.02 [all_outputs]
