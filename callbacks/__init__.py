"""Lightning callbacks that make a run produce what the analysis needs and survive crashes.

- modular_checkpoint.ModularCheckpoint: per-group safetensors + metrics every N epochs, manifest
- parameter_updates.ParameterUpdateMonitor: is every module still changing? (sampled, no weight copy)
- gradient_norms.GradientNormMonitor: per-group gradient norms before clipping
- dead_units.DeadUnitMonitor: never-active units per group over the validation pass
- oom_backoff.OOMBackoff: halve the micro-batch and double accumulation on CUDA OOM
- rng_state.RNGStateCheckpoint: RNG states in the resume checkpoint (exact resume)
- atomic_checkpoint_io.AtomicCheckpointIO: Lightning checkpoints written by temp file + rename;
  AsyncAtomicCheckpointIO (default) does it on the writer thread from a CPU snapshot
- background_writer: the one thread per process that writes checkpoint files in submission order
- resume_checkpoint.ResumeCheckpoint: ModelCheckpoint whose last.ckpt relink waits for the background save
- module_groups / param_sampling: the shared pieces
EMA and LR monitoring are Lightning's own (EMAWeightAveraging, LearningRateMonitor), set in conf/callbacks.
"""
