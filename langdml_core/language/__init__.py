"""Language side: frozen text encoders (registry), class-text tables and the matching loss."""
