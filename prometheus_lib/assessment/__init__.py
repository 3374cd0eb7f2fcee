"""The assessment engine: alphas, LightGBM walk-forward scores, ensemble and calibration."""
