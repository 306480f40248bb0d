"""Per-task wiring: data -> vocabulary -> model -> trainer, and evaluation."""
