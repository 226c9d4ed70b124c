"""The one error class of the analysis: bad input (run files, config, thresholds), not a bug."""

from __future__ import annotations

from redheart.errors import RedHeartError


class AnalysisError(RedHeartError, ValueError):
    """Input the analysis cannot use. The message names the file (or config key) and the field, so
    `analyze.py` prints it alone and exits 2, without a traceback."""
