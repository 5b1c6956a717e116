"""Evaluation metrics: speaker similarity with resemblyzer's pretrained encoder, run in JAX."""
