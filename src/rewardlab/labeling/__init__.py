"""Automatic process labels: Math-Shepherd Monte-Carlo estimation, answer checkers, generators."""
