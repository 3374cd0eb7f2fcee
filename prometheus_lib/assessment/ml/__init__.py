"""LightGBM walk-forward scores: features, labels, purged CV, promotion gates."""
