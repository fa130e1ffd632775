"""The city simulator behind ``citywatch simulate``: a seeded city, devices, faults, MQTT.

Modules, one concern each: ``citygen`` (the city model), ``timebase`` (simulated time and
pacing), ``lamps`` / ``bins`` / ``vehicles`` / ``dust`` (each family's behaviour),
``faults`` (the fault plan and ground truth), ``transport`` (duplicates, out-of-order,
malformed payloads), ``formats`` (payload encoders), ``engine`` (``generate``: the
time-ordered message stream), ``ledger`` (acked readings), ``publisher`` (asyncio MQTT).

Example:
    >>> from ingest.simulator.engine import Simulation
    >>> from ingest.simulator.config import SimConfig
    >>> sim = Simulation(SimConfig(seed=1, sim_seconds=600, start=1_700_000_000))
    >>> sum(1 for _ in sim.messages()) > 100
    True
"""
