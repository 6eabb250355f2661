"""Curation: a folder (or archive) of chip-design files -> clean, labelled, deduplicated corpus JSONL."""
