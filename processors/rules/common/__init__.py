"""Rules for every family: device silence (offline) and values outside a plausible range.

Both see every reading (``families`` empty) and raise per-device conditions of their own
kind (target type ``device``), whatever the family.

Rule name -> module:

- ``device_silence`` -> :mod:`processors.rules.common.device_silence`
- ``out_of_range`` -> :mod:`processors.rules.common.out_of_range`
"""
