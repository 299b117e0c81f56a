"""Wearable motion streams over GATT: profiles, sample timing, the connection."""
