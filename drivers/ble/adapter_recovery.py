"""Recover a wedged Bluetooth adapter with ``bluetooth-auto-recovery``.

That library (used by Home Assistant on thousands of Pis) speaks the kernel's Bluetooth
management socket: it unblocks rfkill, power-cycles the controller and, if it has gone
silent, resets it on USB. Writing that by hand means raw HCI/MGMT sockets and USB ioctls.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


async def adapter_mac(adapter: str) -> str:
    """The adapter's address from BlueZ over D-Bus, or all zeros if BlueZ cannot say.

    ``recover_adapter`` finds the controller by its hci name when the address is unknown.
    """
    try:
        from bluetooth_adapters import get_bluetooth_adapter_details

        details = await get_bluetooth_adapter_details()
        return str(details[adapter]["org.bluez.Adapter1"]["Address"])
    except Exception as exc:
        log.debug("cannot read the address of %s from BlueZ: %r", adapter, exc)
        return "00:00:00:00:00:00"


async def recover_adapter(adapter: str, gone_silent: bool = True) -> bool:
    """Power-cycle (and if needed USB-reset) ``adapter`` (``"hci0"``). True if it came back."""
    from bluetooth_auto_recovery import recover_adapter as _recover

    try:
        hci = int(adapter.removeprefix("hci"))
    except ValueError:
        log.error("cannot recover %r: not an hciN adapter name", adapter)
        return False
    mac = await adapter_mac(adapter)
    try:
        return bool(await _recover(hci, mac, gone_silent=gone_silent))
    except Exception as exc:
        log.error("Bluetooth adapter %s recovery failed: %r", adapter, exc)
        return False
