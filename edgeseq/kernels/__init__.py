"""GPU kernels for the models' hot loops (the BiGRU recurrence as one CUDA or Triton launch), apart from the models."""
