"""chipadapt's Optuna sweeper, where Hydra looks for plugins (it instantiates sweepers from the
`hydra_plugins` package only). Light on purpose: Hydra imports every plugin module at start-up, so the
search itself (optuna) is imported in chipadapt.optuna_search when a sweep runs."""

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class OptunaSearch(OptunaSweeper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from chipadapt.optuna_search import StudySweeper

        self.sweeper.__class__ = StudySweeper  # the plugin's own state, with chipadapt's sweep
