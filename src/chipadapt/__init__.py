"""chipadapt: domain-adapt LLMs to chip design (ChipNeMo) and merge instruction following back (ChipAlign)."""

from chipadapt import config_resolvers as _config_resolvers  # noqa: F401  (registers ${chipadapt_resource:...})

__version__ = "0.1.0"
