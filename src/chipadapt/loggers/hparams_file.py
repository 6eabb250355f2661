"""hparams.yaml of the CSV and TensorBoard loggers, written whole (beside, then renamed over) and with
its text as given. Lightning writes the file through OmegaConf and reads it back through OmegaConf: a
`${` in a value (a chat template) stopped the write with a GrammarParseError, the job failing in its
logger, or read back as an interpolation. It is written escaped (loggers/literal_text.py), so OmegaConf
reads the text as it was; the loggers that send the config elsewhere (W&B, TensorBoard's HPARAMS view)
keep the text as it is."""

from argparse import Namespace

from lightning.pytorch.core.saving import save_hparams_to_yaml

from chipadapt.io.atomic import atomic_file
from chipadapt.loggers.literal_text import literal_strings


def save_hparams_file(path: str, hparams) -> None:
    if isinstance(hparams, Namespace):  # as Lightning's own loggers may hold them
        hparams = vars(hparams)
    with atomic_file(path) as tmp:
        save_hparams_to_yaml(tmp, literal_strings(hparams))
