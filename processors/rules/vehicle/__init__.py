"""Vehicle rules: GPS jumps, overspeed, idling, the muck-truck permit rules, trip summaries.

What they share: they see the ``vehicle`` family's readings (GPS fixes with speed, ignition,
payload and odometer), keep their state per vehicle, and are built from the rules file's
``vehicle`` section plus the city model (centre, routes, depots, disposal sites, no-haul
zones), see ``base.py``.

Positions are projected once per fix to local metres (equirectangular around the city
centre: a multiply and a subtract; under 0.3 % distance error within 20 km, and routes and
zones are projected the same way, so inside/outside tests are unaffected). Geometry tests use
shapely only for muck trucks, behind a bounding-box test and a per-cell cache (``Area`` in
``geo.py``): most fixes are answered by one dict lookup.

Each rule that uses positions runs its own ``FixFilter`` (``fixes.py``; deterministic, so they
all agree): a fix implying > 200 km/h from the last good fix (and > 300 m away) is a jump and
is dropped, so one bad fix can neither start nor break a corridor, dump or hauling streak.
Three mutually consistent "jumps" in a row mean the *previous* fix was the bad one: the
filter re-anchors.

Rule name -> module:

- ``gps_jump`` -> ``processors.rules.vehicle.gps_jump``
- ``overspeed`` -> ``processors.rules.vehicle.overspeed``
- ``idle_too_long`` -> ``processors.rules.vehicle.idle_too_long``
- ``corridor_violation`` -> ``processors.rules.vehicle.corridor_violation``
- ``illegal_dump`` -> ``processors.rules.vehicle.illegal_dump``
- ``daytime_hauling`` -> ``processors.rules.vehicle.daytime_hauling``
- ``trip_summary`` -> ``processors.rules.vehicle.trip_summary``

Shared helpers: ``geo.py`` (``EARTH_M``, ``LocalProjection``, ``haversine_m``, ``Area``,
``Areas``, ``projection_for``, ``poly``, ``model_sites``, ``model_vehicle_routes``),
``fixes.py`` (``OK``, ``JUMP``, ``STALE``, ``FixFilter``), ``base.py`` (``VehicleRule``,
``common_kwargs``), ``coverage.py`` (``RouteSampler``, for trip summaries).
"""
