"""Tools around the BLE driver, not the driver: recording adverts (``ble capture``),
replaying them through the real driver (``ble replay``, tests, benchmarks) and a fake GATT
peripheral for wearables (tests, the simulator). The driver never imports them."""
