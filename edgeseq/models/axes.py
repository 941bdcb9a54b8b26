"""The axis names with a role: every tensor that names one shares it, and sweeps size it (batch x time)."""

TIME, BATCH = "time", "batch"
