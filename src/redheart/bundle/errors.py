"""The one error class of model bundles: a bundle, input file or setting that cannot be used as given.

Entry points (export.py, predict.py, evaluate.py) catch it and exit with code 2 and the message alone.
"""


from redheart.errors import RedHeartError


class BundleError(RedHeartError, ValueError):
    """A bundle folder, its config or weights, or an input that cannot be used; the message says how to fix it."""
