"""Hide Lightning's advertisement tips ("💡 Tip: ... litlogger / litmodels") from every run's log.

Lightning prints them through its rank-zero info logger at each Trainer set-up, with no flag to turn
them off; a logging filter drops exactly those records and leaves Lightning's other messages alone.
"""

from __future__ import annotations

import logging

TIP_PREFIX = "💡 Tip:"
# rank_zero_info logs to the logger of the rank_zero module that set it last (pytorch's, or fabric's).
LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(TIP_PREFIX)


def hide_lightning_tips() -> None:
    """Idempotent: the filter is added once per logger."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _not_a_tip not in logger.filters:
            logger.addFilter(_not_a_tip)
