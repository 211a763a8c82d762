"""The circuit tree as a set of current limits ("slots"), and how each charge point's watts land on them.

A slot is one phase of one circuit. Loads are tracked per supply phase (L1, L2, L3) and added up every circuit on
the path to the root, so a 1-phase circuit under a 3-phase parent loads the parent phase it sits on. A 1-phase
circuit maps all three supply phases onto its one slot: with a consistent config only its own phase carries load,
and with an inconsistent one the sum is the safe reading.

Cars whose current is set through their API follow slowly, so docs/contract.md §9 counts them at max(allocation,
measured draw) on their circuits. Their draw is kept per slot as a "baseline": the steady load (what a circuit carries
once every car has followed) counts allocations only, the transient load counts a slow car's baseline and only what it
is given above it. Both must stay within the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from chargebus_allocator.model import ChargePoint, Circuit, MeteredLoad, Phase, Wiring

PHASE_NAMES: tuple[Phase, Phase, Phase] = ("L1", "L2", "L3")
_PHASE_INDEX = {"L1": 0, "L2": 1, "L3": 2}

Entries = tuple[tuple[int, float], ...]  # (slot, amps per watt)


@dataclass(frozen=True, slots=True)
class CircuitTree:
    circuits: dict[str, Circuit]
    ancestry: dict[str, tuple[str, ...]]  # the circuit itself, its parent, … up to the root
    order: tuple[str, ...]  # sorted by id: output order does not depend on config order


def build_tree(circuits: Iterable[Circuit]) -> CircuitTree:
    by_id: dict[str, Circuit] = {}
    for circuit in circuits:
        if circuit.id in by_id:
            raise ValueError(f"circuit {circuit.id!r} is defined twice")
        if circuit.phases not in (1, 3):
            raise ValueError(f"circuit {circuit.id!r}: phases must be 1 or 3, not {circuit.phases}")
        by_id[circuit.id] = circuit
    ancestry: dict[str, tuple[str, ...]] = {}
    for circuit_id, circuit in by_id.items():
        chain = [circuit_id]
        parent = circuit.parent
        while parent is not None:
            if parent not in by_id:
                raise ValueError(f"circuit {chain[-1]!r}: parent {parent!r} is not a circuit")
            if parent in chain:
                raise ValueError(f"circuit {circuit_id!r}: the parents form a loop")
            chain.append(parent)
            parent = by_id[parent].parent
        ancestry[circuit_id] = tuple(chain)
    return CircuitTree(by_id, ancestry, tuple(sorted(by_id)))


class Footprint(NamedTuple):
    """How a charge point's power loads the slots: `steady` from 0 W, `late` only above `above_w`."""

    steady: Entries = ()
    late: Entries = ()
    above_w: float = 0.0

    def add_to(self, used: list[float], power_w: float, sign: float = 1.0) -> None:
        """Add (or with sign -1 take off) the load of `power_w` to per-slot amps `used`."""
        if not self.steady and not self.late:
            return  # on no circuit (most charge points of a large site without a tree): nothing to count
        for slot, per_w in self.steady:
            used[slot] += sign * per_w * power_w
        above = power_w - self.above_w
        if above > 0:
            for slot, per_w in self.late:
                used[slot] += sign * per_w * above


#: A charge point on no circuit: only the budget and its own maximum limit it.
NO_LOAD = Footprint()


class Network:
    """The slots of one round: limits, labels, fixed loads (meters, read-only and uncontrolled draws) and the
    baselines of slow followers."""

    def __init__(self, tree: CircuitTree) -> None:
        self.tree = tree
        self.labels: list[tuple[str, Phase]] = []
        self.limits: list[float] = []
        self.fixed: list[float] = []
        self.baseline: list[float] = []
        self._slots: dict[str, tuple[int, int, int]] = {}
        self._entries_cache: dict[tuple[str, tuple[int, ...], float], Entries] = {}
        self._footprints: dict[tuple[str, Wiring, int, float], Footprint] = {}
        for circuit_id in tree.order:
            circuit = tree.circuits[circuit_id]
            first = len(self.limits)
            names = PHASE_NAMES if circuit.phases == 3 else (circuit.phase,)
            for name in names:
                self.labels.append((circuit_id, name))
                self.limits.append(circuit.max_current_a)
            self._slots[circuit_id] = (first, first + 1, first + 2) if circuit.phases == 3 else (first,) * 3
        self.fixed = [0.0] * len(self.limits)
        self.baseline = [0.0] * len(self.limits)
        for circuit_id in tree.order:  # a fixed order: float sums must not depend on the config's order
            if tree.circuits[circuit_id].metered is not None:
                self._add_metered(tree.circuits[circuit_id])

    def circuit_slots(self, circuit_id: str) -> tuple[int, ...]:
        """The slots of a circuit, one per phase of it."""
        return tuple(dict.fromkeys(self._slots[circuit_id]))

    def loaded_phases(self, circuit_id: str | None, wiring: Wiring, phases: int) -> tuple[int, ...]:
        """Supply phases a charge point draws from: the nearest 1-phase circuit on its path decides, else wiring."""
        if circuit_id is not None:
            for node in self._ancestry(circuit_id):
                circuit = self.tree.circuits[node]
                if circuit.phases == 1:
                    return (_PHASE_INDEX[circuit.phase],)
        if wiring == "L1L2L3":
            return tuple(range(max(1, min(phases, 3))))
        return (_PHASE_INDEX[wiring],)

    def entries(self, circuit_id: str, loaded: tuple[int, ...], voltage_v: float) -> Entries:
        """Amps per watt on each slot, for a charge point on `circuit_id` drawing from `loaded` phases."""
        key = (circuit_id, loaded, voltage_v)
        cached = self._entries_cache.get(key)
        if cached is not None:
            return cached
        per_phase = 1.0 / (voltage_v * len(loaded))
        per_slot: dict[int, float] = {}
        for node in self._ancestry(circuit_id):
            for phase in loaded:
                slot = self._slots[node][phase]
                per_slot[slot] = per_slot.get(slot, 0.0) + per_phase
        result = tuple(sorted(per_slot.items()))
        self._entries_cache[key] = result
        return result

    def footprint(self, point: ChargePoint) -> Footprint:
        """Where the charge point's allocation lands, counted from 0 W."""
        if point.circuit is None:
            return NO_LOAD
        key = (point.circuit, point.wiring, point.phases, point.voltage_v)
        footprint = self._footprints.get(key)
        if footprint is None:
            loaded = self.loaded_phases(point.circuit, point.wiring, point.phases)
            footprint = self._footprints[key] = Footprint(self.entries(point.circuit, loaded, point.voltage_v))
        return footprint

    def add_fixed(self, footprint: Footprint, power_w: float) -> None:
        """Count a draw the allocator does not steer this round on every circuit above the charge point."""
        footprint.add_to(self.fixed, max(0.0, power_w))

    def add_baseline(self, footprint: Footprint, power_w: float) -> None:
        """A slow follower's present draw: transient load until it has followed."""
        footprint.add_to(self.baseline, max(0.0, power_w))

    def _add_metered(self, circuit: Circuit) -> None:
        assert circuit.metered is not None
        per_phase = metered_amps(circuit.metered, circuit.voltage_v, circuit.phases, circuit.phase)
        for node in self._ancestry(circuit.id):
            for phase, amps in enumerate(per_phase):
                self.fixed[self._slots[node][phase]] += amps

    def _ancestry(self, circuit_id: str) -> tuple[str, ...]:
        chain = self.tree.ancestry.get(circuit_id)
        if chain is None:
            raise ValueError(f"{circuit_id!r} is not a circuit")
        return chain

    def free(self) -> list[float]:
        """Room per slot for steady load."""
        return [limit - fixed for limit, fixed in zip(self.limits, self.fixed, strict=True)]

    def transient_free(self) -> list[float]:
        """Room per slot for transient load: slow followers' present draws taken off."""
        return [room - base for room, base in zip(self.free(), self.baseline, strict=True)]


def above_baseline(footprint: Footprint, baseline_w: float) -> Footprint:
    """A slow follower's transient footprint: it loads its slots only beyond its present draw."""
    if baseline_w <= 0:
        return footprint
    return Footprint((), footprint.steady + footprint.late, baseline_w)


def metered_amps(metered: MeteredLoad, voltage_v: float, phases: int, phase: Phase) -> tuple[float, float, float]:
    """A meter's non-EVSE load in amps per supply phase; negative readings (export) count as 0, never as room."""
    if metered.phase_current_a is not None:
        per_phase = [max(0.0, value) for value in metered.phase_current_a]
    elif metered.phase_power_w is not None:
        per_phase = [max(0.0, value) / voltage_v for value in metered.phase_power_w]
    else:
        share = max(0.0, metered.power_w) / voltage_v
        per_phase = [share / 3] * 3 if phases == 3 else [share, 0.0, 0.0]
    if phases == 1:
        # All of it is on the circuit's own phase; a 3-phase meter on a 1-phase circuit is summed.
        total = sum(per_phase)
        per_phase = [0.0, 0.0, 0.0]
        per_phase[_PHASE_INDEX[phase]] = total
    return (per_phase[0], per_phase[1], per_phase[2])


def slot_loads(network: Network, footprints: Sequence[Footprint], powers: Sequence[float]) -> list[float]:
    """Fixed loads and baselines plus every allocation (slow followers' footprints above their baseline)."""
    loads = [fixed + base for fixed, base in zip(network.fixed, network.baseline, strict=True)]
    for footprint, power_w in zip(footprints, powers, strict=True):
        if power_w > 0:
            footprint.add_to(loads, power_w)
    return loads
