"""Datasets: adapters (name -> raw splits), split policies, the tokenized Parquet cache, batching.

Plain pyarrow/numpy/transformers code: no Ray import, so Ray Data and tests call the same functions.
"""
