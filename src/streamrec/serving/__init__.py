"""Served models, online refresh of touched users, retrain-and-publish, the model registry."""
