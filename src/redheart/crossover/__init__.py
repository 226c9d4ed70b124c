"""Parameter crossover and its honest evaluation (docs/crossover.md).

checkpoints  the run's manifest; sha256-verified, lazily opened safetensors (pickle refused)
choices      which epoch each module group takes (explicit overrides or the analysis), plateaus, shifts
assemble     strict assembly, one group at a time: every model tensor exactly once; provenance
soups        uniform plateau average, greedy soup, greedy crossover (val only)
candidates   the list of models the evaluation compares
evaluate     predictions and metrics of one candidate on val or test
temperature  temperature scaling, ECE, Brier score
bootstrap    paired bootstrap CIs of the difference against best single
tables       comparison table in Markdown and LaTeX
report       the evaluation's files: evaluation.json, tables, bar chart, final_report.md
rebuild      the run's net and data from run.json
run          crossover_and_evaluate(...): what analyze.py and combine.py call
"""

from redheart.crossover.errors import CrossoverError

__all__ = ["CrossoverError"]
