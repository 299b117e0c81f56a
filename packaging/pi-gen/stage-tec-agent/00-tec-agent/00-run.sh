#!/bin/bash -e
# Install the tec-agent .deb into the image with apt (which pulls in its Depends from the
# Raspberry Pi OS archive). The .deb is architecture-specific: build it with
# packaging/build-deb on a machine of the image's architecture (arm64 for the 64-bit
# image) and either drop it into files/ or point TEC_AGENT_DEB at it.

deb="${TEC_AGENT_DEB:-}"
if [ -z "${deb}" ]; then
	shopt -s nullglob
	debs=(files/tec-agent_*.deb)
	shopt -u nullglob
	if [ "${#debs[@]}" -ne 1 ]; then
		echo "stage-tec-agent: put exactly one tec-agent_*.deb in $(pwd)/files" \
			"or set TEC_AGENT_DEB (found ${#debs[@]})" >&2
		exit 1
	fi
	deb="${debs[0]}"
fi
[ -f "${deb}" ] || { echo "stage-tec-agent: ${deb} not found" >&2; exit 1; }

deb_arch="$(dpkg-deb --field "${deb}" Architecture)"
image_arch="$(on_chroot <<<'dpkg --print-architecture' | tail -n 1)"
if [ "${deb_arch}" != "${image_arch}" ]; then
	echo "stage-tec-agent: ${deb} is for ${deb_arch}, the image is ${image_arch}:" \
		"build the .deb on a ${image_arch} machine" >&2
	exit 1
fi

install -m 0644 "${deb}" "${ROOTFS_DIR}/tmp/tec-agent.deb"
on_chroot <<'CHROOT'
set -e
apt-get install -y --no-install-recommends /tmp/tec-agent.deb bluez
rm -f /tmp/tec-agent.deb
CHROOT
