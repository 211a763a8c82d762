"""chargebus ocpp-bridge: OCPP charge points as EVSEs."""
