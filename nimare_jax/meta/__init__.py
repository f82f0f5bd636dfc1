"""Meta-analysis estimators: coordinate-based (``cbma``) and image-based (``ibma``)."""
