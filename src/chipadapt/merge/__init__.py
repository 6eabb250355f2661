"""Model merging: ChipAlign's geodesic interpolation and the baselines it was compared with."""
