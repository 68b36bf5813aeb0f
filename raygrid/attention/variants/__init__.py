"""One record module per attention variant (`VARIANT = Variant(...)`); raygrid.attention.registry finds them all."""
