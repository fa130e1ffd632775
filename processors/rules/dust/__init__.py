"""Dust and noise rules: site exceedances, night noise, stuck and drifting sensors.

What they share: they see the ``dust`` family's readings (PM10 and noise of construction-site
sensors), raise per site (exceedance, night noise) or per device (stuck, drift) through a
streak, and are built from the rules file's ``dust`` section plus the city model's sites
(limits, nights, which sensor belongs to which site), see ``base.py``.

Windows are per-minute buckets in a ring (``window.py``): adding a reading is O(1),
out-of-order readings inside the window land in their own minute (and the site is judged
again at once), exact duplicates (same device and ts) are dropped.

Rule name -> module:

- ``dust_exceedance`` -> ``processors.rules.dust.dust_exceedance``
- ``night_noise`` -> ``processors.rules.dust.night_noise``
- ``stuck_sensor`` -> ``processors.rules.dust.stuck_sensor``
- ``sensor_drift`` -> ``processors.rules.dust.sensor_drift``

Shared helpers: ``window.py`` (``MINUTE_NS``, ``MinuteWindow``), ``base.py`` (``DustRule``,
duplicate filter, ``now``, ``common_kwargs``, ``sites``, ``model_sensor_site``).
"""
