"""Evaluation: figures from probabilities (numpy), and a model run over the splits of a dataset."""
