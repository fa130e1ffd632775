"""Waste-bin rules: overflow, unserved overflow, fast filling, fire and knocked over.

Every rule here sees only ``bin`` readings, keeps its own state per bin and shares
:class:`~processors.rules.bin.base.BinRule` (the bin rules config plus one streak per bin).
Readings older than the last one seen for a bin (duplicates, out-of-order) are ignored.

Rule name -> module:

- ``bin_overflow`` -> :mod:`processors.rules.bin.bin_overflow`
- ``bin_overflow_unserved`` -> :mod:`processors.rules.bin.bin_overflow_unserved`
- ``bin_fast_fill`` -> :mod:`processors.rules.bin.bin_fast_fill`
- ``bin_fire`` -> :mod:`processors.rules.bin.bin_fire`
- ``bin_knocked_over`` -> :mod:`processors.rules.bin.bin_knocked_over`

Shared helpers: :mod:`processors.rules.bin.base` (``HOUR_NS``, ``BinRule``,
``overflow_verdict``).
"""
