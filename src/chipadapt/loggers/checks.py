"""The `logger` settings of a job, checked before the job does any work: a mistake there otherwise
shows only where the loggers are built (in training after the model and data are loaded), as a
library's traceback, or not at all (`offline=maybe` was taken as true)."""

from omegaconf import DictConfig, ListConfig, OmegaConf

from chipadapt.errors import ChipadaptError


def check_logger_config(cfg: DictConfig) -> None:
    loggers = cfg.get("logger")
    if loggers is None:  # an entry point without loggers (chat, reproduce)
        return
    wandb = loggers.get("wandb")
    if wandb is not None:
        check_wandb(wandb)
    if all(node is None for node in loggers.values()) and (cfg.get("callbacks") or {}).get("lr_monitor") is not None:
        off = ", ".join(f"logger.{name}=null" for name in loggers) or "logger={}"
        raise ChipadaptError(
            f"{off} leaves training no logger, and callbacks.lr_monitor logs to one: keep logger.csv, "
            "choose another (logger=tensorboard|wandb), or switch the monitor off too (callbacks.lr_monitor=null)"
        )


def check_wandb(node: DictConfig) -> None:
    offline = node.get("offline")
    if not isinstance(offline, bool):  # Hydra reads `offline=maybe` as the string "maybe"
        raise ChipadaptError(f"logger.wandb.offline: {offline!r} is not true or false")
    tags = node.get("tags")
    if tags is not None and not isinstance(tags, str):
        values = OmegaConf.to_container(tags, resolve=True) if isinstance(tags, ListConfig) else tags
        if not isinstance(values, list) or any(isinstance(tag, (dict, list)) for tag in values):
            raise ChipadaptError(
                f"logger.wandb.tags: {values!r} is not a tag or a list of tags (logger.wandb.tags=[a,b])"
            )
    if not offline:
        check_wandb_credentials()


def check_wandb_credentials() -> None:
    """W&B online needs an API key; without one (and no terminal to ask for it in) wandb.init stops
    the job with a traceback. Read where wandb reads it (WANDB_API_KEY, .netrc, its settings), offline."""
    try:
        from wandb.errors import AuthenticationError
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib.wbauth import authenticate
    except ImportError:  # no wandb, or one that keeps credentials elsewhere: wandb.init will say
        return
    how = (
        "set WANDB_API_KEY, run `wandb login`, or log offline with logger.wandb.offline=true "
        "(`wandb sync DIR/wandb/offline-run-*` later)"
    )
    try:
        settings = wandb_setup.singleton().settings
        if settings.mode in ("offline", "dryrun", "disabled"):  # WANDB_MODE decides over offline=false
            return
        found = authenticate.authenticate_session(
            host=settings.base_url, source="chipadapt", prompt=False, update_session=False
        )
    except AuthenticationError as err:
        raise ChipadaptError(f"logger.wandb.offline=false: {err}; {how}") from None
    except Exception:  # noqa: BLE001 (wandb's own settings are broken or changed: wandb.init will say)
        return
    if found is None:
        raise ChipadaptError(f"logger.wandb.offline=false: no W&B API key is configured for {settings.base_url}; {how}")
