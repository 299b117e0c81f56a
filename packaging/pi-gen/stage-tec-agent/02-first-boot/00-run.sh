#!/bin/bash -e
# First-boot provisioning: the installer (or the hub's preparer) copies the home's
# tec-agent.toml, and the files it names (mqtt.pass, ca.pem) in tec-agent.d/, onto the SD
# card's boot partition; on boot, tec-agent-provision.service moves them to /etc/tec-agent
# (mode 0600, owner tec-agent), wipes them from the boot partition and (re)starts the agent.

install -m 0755 files/tec-agent-provision "${ROOTFS_DIR}/usr/local/sbin/tec-agent-provision"
install -m 0644 files/tec-agent-provision.service \
	"${ROOTFS_DIR}/etc/systemd/system/tec-agent-provision.service"

on_chroot <<'CHROOT'
set -e
systemctl enable tec-agent-provision.service tec-agent.service
CHROOT
