"""One file per stage of `train.py stage=...`, each a short recipe over `common.py`'s training path."""
