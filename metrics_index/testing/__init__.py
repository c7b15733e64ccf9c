"""Stand-ins for external systems that tests and benches share (no pytest here: benches import it too)."""
