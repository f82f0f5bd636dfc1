"""Annotation of studies: topic models and text-derived features."""
