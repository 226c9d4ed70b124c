"""The one error class of the crossover: bad input (files, manifest, analysis, config) named precisely.

Entry points catch it and exit with code 2 and the message alone, as train.py does for data errors.
"""


class CrossoverError(ValueError):
    """A checkpoint, manifest, analysis file or crossover setting that cannot be used as given."""
