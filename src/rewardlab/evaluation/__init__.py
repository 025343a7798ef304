"""Evaluation and diagnostics of any ``Scorer``: benchmark accuracy, calibration, probes, ratings."""
