"""Bluetooth LE sensors (BTHome) and wearables (GATT motion streams), with supervision."""

from drivers.ble.config import BleConfig, BleDevice

__all__ = ["BleConfig", "BleDevice"]
