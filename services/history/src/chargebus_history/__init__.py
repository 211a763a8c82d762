"""chargebus_history: samples of EVSE, vehicle and meter state; power reconstruction, energy, sessions.

The names below are what the service runtime needs; the rules live in the modules named for them
(`reconstruct`, `merge`, `sessions`, `energy`, `dedup`).
"""

from chargebus.zones import resolve_timezone

from chargebus_history.dedup import ChangeFilter
from chargebus_history.queries import EvseTarget, Target, VehicleTarget, energy_query, power_query, sessions_query
from chargebus_history.records import EvseRecord, MeterRecord, Record, VehicleRecord
from chargebus_history.store import HistoryStore, retention_cutoff

__all__ = [
    "ChangeFilter",
    "EvseRecord",
    "EvseTarget",
    "HistoryStore",
    "MeterRecord",
    "Record",
    "Target",
    "VehicleRecord",
    "VehicleTarget",
    "energy_query",
    "power_query",
    "resolve_timezone",
    "retention_cutoff",
    "sessions_query",
]
