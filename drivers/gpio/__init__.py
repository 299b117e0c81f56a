"""Wired sensors and outputs on the Pi GPIO header (gpiozero). See ``driver.GpioDriver``."""
