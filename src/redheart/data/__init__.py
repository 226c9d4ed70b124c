"""The data pipeline: sources, validation, near-duplicate removal, splits, embeddings and the DataModule."""
