"""Telecare units on serial ports: Contact ID codec, framing and the unit driver."""
