"""Pure computation: models, item indexes, evaluation (no Redis)."""
