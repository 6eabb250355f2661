"""REPORT.md of a reproduction: one module per section, each reading its steps' folders."""
