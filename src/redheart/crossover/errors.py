"""The one error class of the crossover: bad input (files, manifest, analysis, config) named precisely.

Entry points catch it (as every `RedHeartError`) and exit with code 2 and the message alone.
"""

from redheart.errors import RedHeartError


class CrossoverError(RedHeartError, ValueError):
    """A checkpoint, manifest, analysis file or crossover setting that cannot be used as given."""
