"""Decoding brain maps into text and encoding text into brain maps."""
