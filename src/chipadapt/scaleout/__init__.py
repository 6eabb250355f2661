"""Distributed strategies (FSDP, DeepSpeed) built from config, and saving sharded models as HF folders."""
