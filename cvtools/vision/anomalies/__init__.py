"""Anomalies of the dataset: label errors (errors.py) and duplicates (duplicates.py), computed on cached
embeddings and kept until the dataset or the main model changes (service.py)."""
