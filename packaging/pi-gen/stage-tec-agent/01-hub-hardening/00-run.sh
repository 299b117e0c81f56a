#!/bin/bash -e
# A hub runs unattended for years on an SD card:
# - the SoC's hardware watchdog reboots it if the kernel or systemd hangs (systemd pets
#   it; tec-agent.service has its own WatchdogSec= on top);
# - journald keeps logs in RAM only, bounded, so logging never wears the card out.

install -d "${ROOTFS_DIR}/etc/systemd/system.conf.d" "${ROOTFS_DIR}/etc/systemd/journald.conf.d"
install -m 0644 files/watchdog.conf "${ROOTFS_DIR}/etc/systemd/system.conf.d/50-tec-agent-watchdog.conf"
install -m 0644 files/journald.conf "${ROOTFS_DIR}/etc/systemd/journald.conf.d/50-tec-agent.conf"

# The bcm2835 watchdog device tree parameter (on by default in current firmware; stated
# explicitly so the image does not depend on that default).
config_txt="${ROOTFS_DIR}/boot/firmware/config.txt"
if [ ! -f "${config_txt}" ]; then
	echo "stage-tec-agent: ${config_txt} not found (not a Bookworm image?)" >&2
	exit 1
fi
if ! grep -qE '^[[:space:]]*dtparam=watchdog=on' "${config_txt}"; then
	printf '\n[all]\n# tec-agent: hardware watchdog, fed by systemd (RuntimeWatchdogSec)\ndtparam=watchdog=on\n' \
		>> "${config_txt}"
fi

# Persistent journal files would be written to /var/log/journal if the directory exists.
rm -rf "${ROOTFS_DIR}/var/log/journal"
