"""chargebus_history."""
