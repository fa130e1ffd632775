"""Device commands: switch, dim, schedule lamps; downlink delivery and tracking."""
