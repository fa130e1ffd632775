"""Offline replay of recorded series through detectors, and NAB scoring of the results.

Example:
    $ citywatch backtest --detector robust_z --input data/ --output results/
"""
