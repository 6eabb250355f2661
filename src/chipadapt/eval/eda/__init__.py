"""Static checks of generated OpenROAD Python scripts."""
