"""Streetlight rules: what a lamp should do against what it does, per lamp and per circuit.

What a lamp *should* do comes from :class:`~processors.rules.streetlight.schedule.LampSchedule`:
lit from sunset to sunrise (astral, for the city's lat/lon) at the level of the lamp's dimming
profile (local time), dark by day; within a grace around sunrise/sunset (and around a profile's
switch times) nothing is judged. Whether a lamp *is* lit comes from its power draw when reported
(a lamp that says "on" but draws nothing is out), else its current, else its ``power_state``.

Rule name -> module:

- ``lamp_out`` -> :mod:`processors.rules.streetlight.lamp_out`
- ``day_burn`` -> :mod:`processors.rules.streetlight.day_burn`
- ``lamp_degradation`` -> :mod:`processors.rules.streetlight.lamp_degradation`
- ``voltage_out_of_band`` -> :mod:`processors.rules.streetlight.voltage_out_of_band`
- ``circuit_outage`` -> :mod:`processors.rules.streetlight.circuit_outage`

Shared helpers: ``schedule`` (what a lamp should do, whether it is lit), ``circuits`` (which
share of a circuit is dark), ``base`` (the schedule trait, the per-lamp rule base, the factory
arguments).
"""
