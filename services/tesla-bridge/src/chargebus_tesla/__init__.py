"""chargebus_tesla."""
