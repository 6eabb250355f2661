# OpenROAD floorplan, placement and CTS for Kestrel KST-100 (fictional library and macros).
read_lef lib/kes40lp_9t.tech.lef
read_lef lib/kes40lp_9t.lef
read_lef macros/kes_sram_16kx32.lef
read_liberty lib/kes40lp_9t_ss_0p99v_125c.lib
read_verilog out/kes_top.netlist.v
link_design kes_top
read_sdc scripts/kestrel.sdc

initialize_floorplan -utilization 55 -aspect_ratio 1.0 -core_space 20 -site core9t
make_tracks
place_pins -hor_layers metal3 -ver_layers metal2

# Macros along the left and bottom edges with 10 um halos.
macro_placement -halo {10 10} -channel {20 20}
tapcell -distance 14 -tapcell_master TAPCELL_9T
pdngen

global_placement -density 0.6 -timing_driven
repair_design
detailed_placement
check_placement -verbose

clock_tree_synthesis -root_buf CLKBUF_X8 -buf_list {CLKBUF_X2 CLKBUF_X4 CLKBUF_X8} -sink_clustering_enable
set_propagated_clock [all_clocks]
repair_timing -hold -hold_margin 0.05
detailed_placement

report_checks -path_delay min_max -format full_clock_expanded
report_wns
report_tns
write_def out/kes_top.cts.def
