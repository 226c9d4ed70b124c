"""Learning-rate sweeps: job records, the shared cumulative results file, the selection score, stage
planning of the hierarchical 5-5-5-5 sweep, plots, and the Hydra callback that ties them to multiruns."""
