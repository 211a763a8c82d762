"""chargebus_twc."""
