"""Model files shipped inside the wheel (see models/fall/)."""
