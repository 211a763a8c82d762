"""chargebus_allocator."""
