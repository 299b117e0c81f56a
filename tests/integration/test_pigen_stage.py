"""The pi-gen stage, run against scratch roots: its sub-stage scripts (pi-gen's
``on_chroot`` replaced by a recorder that answers like the image would) and first-boot
provisioning (``tec-agent-provision --root DIR``). Building a real image needs pi-gen,
loop devices and gigabytes of downloads and is out of scope here (packaging/pi-gen/README.md).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGE = REPO / "packaging" / "pi-gen" / "stage-tec-agent"
PROVISION = STAGE / "02-first-boot" / "files" / "tec-agent-provision"
UID, GID = 4242, 4343

FAKE_ON_CHROOT = r'''
on_chroot() {
    local script
    script="$(cat)"
    printf '%s\n--- end\n' "$script" >> "$ON_CHROOT_LOG"
    case "$script" in *"dpkg --print-architecture"*) echo "$FAKE_IMAGE_ARCH" ;; esac
}
export -f on_chroot
'''


def run_substage(substage: str, rootfs: Path, log: Path, image_arch: str = "arm64",
                 **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", FAKE_ON_CHROOT + 'cd "$1" && ./00-run.sh', "stage", str(STAGE / substage)],
        env={**os.environ, "ROOTFS_DIR": str(rootfs), "ON_CHROOT_LOG": str(log),
             "FAKE_IMAGE_ARCH": image_arch, **env},
        capture_output=True, text=True, check=False, timeout=60,
    )


def fake_deb(tmp_path: Path, arch: str) -> Path:
    pkg = tmp_path / f"pkg-{arch}"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text(
        f"Package: tec-agent\nVersion: 9.9-1\nArchitecture: {arch}\n"
        "Maintainer: t <t@example.org>\nDescription: test\n")
    out = tmp_path / f"tec-agent_9.9-1_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(out)],
                   capture_output=True, check=True)
    return out


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for d in ("boot/firmware", "tmp", "etc/systemd/system", "usr/local/sbin", "var/log/journal"):
        (root / d).mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("# Pi config\ndtparam=audio=on\n")
    return root


def test_every_stage_script_is_executable_bash(tmp_path: Path) -> None:
    scripts = [STAGE / "prerun.sh", PROVISION, *STAGE.glob("*/00-run.sh")]
    assert len(scripts) == 5
    for script in scripts:
        assert script.stat().st_mode & stat.S_IXUSR, script
        subprocess.run(["bash", "-n", str(script)], check=True)
    assert 'IMG_SUFFIX="-tec-agent"' in (STAGE / "EXPORT_IMAGE").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_packaging_shell_scripts_are_shellcheck_clean() -> None:
    bash = [REPO / "packaging/build-deb", STAGE / "prerun.sh", PROVISION,
            *STAGE.glob("*/00-run.sh")]
    posix = [REPO / "packaging/debian" / name for name in ("postinst", "prerm", "postrm")]
    for shell, scripts in (("bash", bash), ("sh", posix)):
        proc = subprocess.run(["shellcheck", "-s", shell, *map(str, scripts)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_the_deb_is_installed_with_apt_in_the_chroot(rootfs: Path, tmp_path: Path) -> None:
    log = tmp_path / "chroot.log"
    deb = fake_deb(tmp_path, "arm64")
    proc = run_substage("00-tec-agent", rootfs, log, TEC_AGENT_DEB=str(deb))
    assert proc.returncode == 0, proc.stderr
    assert (rootfs / "tmp/tec-agent.deb").read_bytes() == deb.read_bytes()
    chroot = log.read_text()
    assert "apt-get install -y --no-install-recommends /tmp/tec-agent.deb bluez" in chroot
    assert "rm -f /tmp/tec-agent.deb" in chroot


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_a_deb_for_another_architecture_is_refused(rootfs: Path, tmp_path: Path) -> None:
    log = tmp_path / "chroot.log"
    proc = run_substage("00-tec-agent", rootfs, log, TEC_AGENT_DEB=str(fake_deb(tmp_path, "amd64")))
    assert proc.returncode != 0
    assert "is for amd64, the image is arm64" in proc.stderr
    assert not (rootfs / "tmp/tec-agent.deb").exists()
    assert "apt-get" not in log.read_text()


def test_no_deb_at_all_is_a_clear_error(rootfs: Path, tmp_path: Path) -> None:
    if list((STAGE / "00-tec-agent/files").glob("tec-agent_*.deb")):
        pytest.skip("a .deb has been dropped into the stage's files/ directory")
    proc = run_substage("00-tec-agent", rootfs, tmp_path / "log")
    assert proc.returncode != 0 and "put exactly one tec-agent_*.deb" in proc.stderr


def test_watchdog_and_journald(rootfs: Path, tmp_path: Path) -> None:
    for _ in range(2):      # idempotent: a re-run must not append twice
        proc = run_substage("01-hub-hardening", rootfs, tmp_path / "log")
        assert proc.returncode == 0, proc.stderr
    config = (rootfs / "boot/firmware/config.txt").read_text()
    assert config.startswith("# Pi config\ndtparam=audio=on\n")
    assert config.count("dtparam=watchdog=on") == 1
    watchdog = (rootfs / "etc/systemd/system.conf.d/50-tec-agent-watchdog.conf").read_text()
    assert "[Manager]" in watchdog and "RuntimeWatchdogSec=15s" in watchdog
    assert "RebootWatchdogSec=2min" in watchdog
    journald = (rootfs / "etc/systemd/journald.conf.d/50-tec-agent.conf").read_text()
    assert "[Journal]" in journald and "Storage=volatile" in journald
    assert "RuntimeMaxUse=32M" in journald
    assert not (rootfs / "var/log/journal").exists()


def test_first_boot_unit_and_script_are_installed_and_enabled(rootfs: Path, tmp_path: Path) -> None:
    log = tmp_path / "chroot.log"
    proc = run_substage("02-first-boot", rootfs, log)
    assert proc.returncode == 0, proc.stderr
    script = rootfs / "usr/local/sbin/tec-agent-provision"
    assert script.read_bytes() == PROVISION.read_bytes()
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    unit = (rootfs / "etc/systemd/system/tec-agent-provision.service").read_text()
    assert "ExecStart=/usr/local/sbin/tec-agent-provision" in unit
    assert "ConditionPathExists=|/boot/firmware/tec-agent.toml" in unit
    assert "Before=tec-agent.service" in unit and "Type=oneshot" in unit
    assert "systemctl enable tec-agent-provision.service tec-agent.service" in log.read_text()


# -- first-boot provisioning --------------------------------------------------------------------

@pytest.fixture
def hub(tmp_path: Path) -> Path:
    """A scratch root as the image leaves it: the package installed, nothing provisioned."""
    root = tmp_path / "hub"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text(
        f"root:x:0:0::/root:/bin/bash\ntec-agent:x:{UID}:{GID}::/var/lib/tec-agent:/usr/sbin/nologin\n")
    (root / "lib/systemd/system/tec-agent.service").write_text(
        (REPO / "systemd/tec-agent.service").read_text())
    return root


def provision(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROVISION), "--root", str(root)], capture_output=True, text=True,
                          check=False, timeout=60)


CONFIG = 'hub_id = "hub-0042"\n[mqtt]\nhost = "mqtt.example.org"\n'


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="provisioning chowns to the tec-agent user: needs root")
def test_provisioning_moves_config_and_secrets_and_wipes_the_boot_partition(hub: Path) -> None:
    boot = hub / "boot/firmware"
    (boot / "tec-agent.toml").write_text(CONFIG)
    (boot / "tec-agent.d").mkdir()
    (boot / "tec-agent.d/mqtt.pass").write_text("s3cret-password\n")
    (boot / "tec-agent.d/ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")

    proc = provision(hub)
    assert proc.returncode == 0, proc.stderr
    etc = hub / "etc/tec-agent"
    # The mode the unit expects (ConfigurationDirectoryMode=): systemd warns when they differ.
    assert (etc.stat().st_uid, etc.stat().st_gid,
            stat.S_IMODE(etc.stat().st_mode)) == (0, GID, 0o1770)
    unit = (REPO / "systemd/tec-agent.service").read_text()
    assert "\nConfigurationDirectoryMode=1770\n" in unit
    for name, content in (("tec-agent.toml", CONFIG), ("mqtt.pass", "s3cret-password\n"),
                          ("ca.pem", "-----BEGIN CERTIFICATE-----\n")):
        f = etc / name
        assert f.read_text() == content
        st = f.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o600), name
    assert sorted(p.name for p in etc.iterdir()) == ["ca.pem", "mqtt.pass", "tec-agent.toml"]
    assert list(boot.iterdir()) == []                 # wiped: nothing left on the FAT partition
    assert "s3cret" not in proc.stderr                # secrets are never logged
    wants = hub / "etc/systemd/system/multi-user.target.wants/tec-agent.service"
    assert wants.is_symlink() and os.readlink(wants).endswith("/tec-agent.service")

    again = provision(hub)                             # next boot: nothing to do
    assert again.returncode == 0 and "nothing to provision" in again.stderr
    assert (etc / "tec-agent.toml").read_text() == CONFIG


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="provisioning chowns to the tec-agent user: needs root")
def test_reprovisioning_keeps_the_previous_config_aside(hub: Path) -> None:
    (hub / "boot/firmware/tec-agent.toml").write_text(CONFIG)
    assert provision(hub).returncode == 0
    new = CONFIG.replace("hub-0042", "hub-0043")
    (hub / "boot/firmware/tec-agent.toml").write_text(new)
    proc = provision(hub)
    assert proc.returncode == 0, proc.stderr
    etc = hub / "etc/tec-agent"
    assert (etc / "tec-agent.toml").read_text() == new
    kept = etc / "tec-agent.toml.before-provision"
    assert kept.read_text() == CONFIG and stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_without_the_package_nothing_moves_and_it_says_why(hub: Path) -> None:
    (hub / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    (hub / "boot/firmware/tec-agent.toml").write_text(CONFIG)
    proc = provision(hub)
    assert proc.returncode == 1
    assert "no tec-agent user" in proc.stderr
    assert (hub / "boot/firmware/tec-agent.toml").read_text() == CONFIG   # kept for a retry
    assert not (hub / "etc/tec-agent").exists()


def test_unsafe_names_and_links_are_refused(hub: Path, tmp_path: Path) -> None:
    d = hub / "boot/firmware/tec-agent.d"
    d.mkdir()
    (d / ".hidden").write_text("x")
    proc = provision(hub)
    assert proc.returncode == 1 and "refusing file name '.hidden'" in proc.stderr
    (d / ".hidden").unlink()
    (tmp_path / "elsewhere").write_text("secret")
    (d / "link.pem").symlink_to(tmp_path / "elsewhere")
    proc = provision(hub)
    assert proc.returncode == 1 and "is not a regular file" in proc.stderr
    assert not (hub / "etc/tec-agent").exists()


def test_nothing_to_provision_is_success(hub: Path) -> None:
    proc = provision(hub)
    assert proc.returncode == 0 and "nothing to provision" in proc.stderr
    assert not (hub / "etc/tec-agent").exists()
