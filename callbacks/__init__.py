"""Lightning callbacks that make a run produce what the analysis needs and survive crashes.

Configured by name in conf/callbacks/default.yaml:
- modular_checkpoint.ModularCheckpoint: per-group safetensors + metrics every N epochs, manifest
- ema.BatchedEMAWeightAveraging: Lightning's EMA with a batched update and warm-up; shares its weights
  through the `AveragedWeights` interface
- parameter_updates.ParameterUpdateMonitor: is every module still changing? (sampled, no weight copy)
- gradient_norms.GradientNormMonitor: per-group gradient norms before clipping
- dead_units.DeadUnitMonitor: never-active units per group over the validation pass
- oom_backoff.OOMBackoff: halve the micro-batch and double accumulation on CUDA OOM
- rng_state.RNGStateCheckpoint: RNG states in the resume checkpoint (exact resume)
- epoch_history.EpochHistory: one record per epoch in epoch_history.json (what LR sweeps compare)
- nan_guard.NaNGuard: stop at the first non-finite loss, naming the step, epoch and cause
- resume_checkpoint.ResumeCheckpoint: Lightning's ModelCheckpoint whose last.ckpt relink waits for the
  background save
Set on the Trainer (conf/trainer): atomic_checkpoint_io.AtomicCheckpointIO, Lightning checkpoints written by
temp file + rename; AsyncAtomicCheckpointIO (default) does it on the writer thread from a CPU snapshot.
Shared pieces: background_writer (the one thread per process that writes checkpoint files in submission
order), module_groups (group membership), param_sampling (sampled weights), step_logging (per-step
monitor values straight to the loggers), train_loss.
LR monitoring is Lightning's own (LearningRateMonitor). The files these write are named in redheart.run_folder.
"""
