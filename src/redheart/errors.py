"""The one error base of the project: input or configuration a command cannot use, not a bug.

Every area raises its own subclass (data, analysis, crossover, sweep, training, run folder), and the
message names the file or config key and the field. The command-line entry points catch
`RedHeartError` alone, print that message on one line and exit with code 2: a traceback would add
nothing for the user, while any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class RedHeartError(Exception):
    """Input (file, config, run folder) that a command cannot use as given; the message says what and where."""


class ConfigError(RedHeartError, ValueError):
    """A config value that cannot be resolved, e.g. an `${optimal_lr:...}` interpolation that fails."""


class RunFolderError(RedHeartError, ValueError):
    """A run folder whose layout or manifest is not what the training writes (redheart.run_folder)."""
