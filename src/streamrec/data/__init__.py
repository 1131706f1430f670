"""Importers, dataset downloads, the synthetic generator, interaction arrays and splits."""
