"""Search as stages: candidates → fusion → answer, each a small class with one `run` method.

`indexer.retrieval.Searcher` wires them from an open index generation.
"""
