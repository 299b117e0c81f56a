"""The Debian package: built once per session by ``packaging/build-deb`` (fast gzip
compression; the shipped default is xz), then inspected with dpkg-deb, run from an
extracted copy, installed, upgraded, removed and purged in a scratch root with dpkg
(``--root`` + ``--force-script-chrootless``: the maintainer scripts honour DPKG_ROOT),
and checked with lintian."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build-deb"
PREFIX = "opt/tec-agent"

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")


def sh(*args: str | Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True, **kw)


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if not (REPO / "systemd" / "tec-agent.service").is_file():
        pytest.fail("systemd/tec-agent.service is missing")
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run(
        [str(BUILD), "--out", str(out), "--no-lintian", "--compress", "gzip",
         "--compress-level", "1"],
        check=False, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    path = Path(last)
    assert path.is_file() and path.parent == out and path.suffix == ".deb", proc.stdout
    return path


@pytest.fixture(scope="module")
def extracted(deb: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("x")
    sh("dpkg-deb", "-x", deb, root)
    return root


def field(deb: Path, name: str) -> str:
    return sh("dpkg-deb", "--field", deb, name).stdout.strip()


def test_control_fields(deb: Path) -> None:
    arch = sh("dpkg", "--print-architecture").stdout.strip()
    assert field(deb, "Package") == "tec-agent"
    assert field(deb, "Architecture") == arch
    assert deb.name == f"tec-agent_{field(deb, 'Version')}_{arch}.deb"
    depends = field(deb, "Depends")
    for dep in ("python3.11", "passwd", "tzdata", "libc6", "libsystemd0"):
        assert re.search(rf"(^|, ){re.escape(dep)}( |,|$)", depends), (dep, depends)
    assert int(field(deb, "Installed-Size")) > 10_000


def test_contents(deb: Path, extracted: Path) -> None:
    listing = sh("dpkg-deb", "-c", deb).stdout
    assert re.search(r"^-rwxr-xr-x root/root .* \./opt/tec-agent/venv/bin/tec-agent$", listing,
                     re.MULTILINE)
    assert re.search(r"^lrwxrwxrwx root/root .* \./usr/bin/tec-agent"
                     r" -> /opt/tec-agent/venv/bin/tec-agent$",
                     listing, re.MULTILINE)
    assert "__pycache__" not in listing and ".pyc" not in listing
    assert "/bin/activate" not in listing and "site-packages/pip/" not in listing
    assert "ai_edge_litert/vendors" not in listing          # pruned: packaging/debian/venv-prune
    unit = extracted / "lib/systemd/system/tec-agent.service"
    assert unit.read_bytes() == (REPO / "systemd/tec-agent.service").read_bytes()
    # The unit runs what the package installs, as the user postinst creates.
    text = unit.read_text()
    assert ("ExecStart=/opt/tec-agent/venv/bin/tec-agent run"
            " --config /etc/tec-agent/tec-agent.toml") in text
    assert "User=tec-agent" in text
    # The venv was relocated: no staging paths left, its interpreter is Debian's versioned one.
    venv = extracted / PREFIX / "venv"
    assert os.readlink(venv / "bin/python3.11") == "/usr/bin/python3.11"
    assert (venv / "bin/tec-agent").read_text().startswith("#!/opt/tec-agent/venv/bin/python")
    assert "tec-agent-deb." not in (venv / "pyvenv.cfg").read_text()
    leftover = subprocess.run(["grep", "-rlI", "tec-agent-deb.", str(extracted)],
                              check=False, capture_output=True, text=True)
    assert leftover.stdout == ""
    lock = (extracted / PREFIX / "requirements.lock").read_text()
    assert (re.search(r"^paho-mqtt==2\.", lock, re.MULTILINE)
            and re.search(r"^tec-agent==", lock, re.MULTILINE))
    for so in venv.rglob("*.so"):
        assert not so.stat().st_mode & stat.S_IXUSR, so
    for doc in ("copyright", "changelog.Debian.gz", "README.Debian"):
        assert (extracted / "usr/share/doc/tec-agent" / doc).is_file()
    assert (extracted / "usr/share/lintian/overrides/tec-agent").read_text().count("#") > 10


def test_maintainer_scripts(deb: Path, tmp_path: Path) -> None:
    sh("dpkg-deb", "-e", deb, tmp_path / "control")
    for name in ("postinst", "prerm", "postrm"):
        script = tmp_path / "control" / name
        assert script.stat().st_mode & stat.S_IXUSR
        assert script.read_text().startswith("#!/bin/sh\n")
        sh("sh", "-n", script)
        assert "@PREFIX@" not in script.read_text()
    postinst = (tmp_path / "control/postinst").read_text()
    assert "deb-systemd-helper enable" in postinst
    assert "[ -d /run/systemd/system ]" in postinst          # never starts in a chroot
    assert "check-config" in postinst                         # nor with an unusable config
    assert "rm -rf" in (tmp_path / "control/postrm").read_text()


def test_the_packaged_venv_runs_and_the_default_config_is_production_grade(
        extracted: Path, tmp_path: Path) -> None:
    python = extracted / PREFIX / "venv/bin/python"
    probe = sh(python, "-c", "import sys, agent.cli, drivers, paho.mqtt.client, serial, bleak,"
               " systemd.daemon; print(sys.prefix)")
    assert probe.stdout.strip() == str(extracted / PREFIX / "venv")
    default = (extracted / "usr/share/tec-agent/tec-agent.toml").read_text()
    # As shipped it names credentials that do not exist yet: not startable, and says why.
    bad = subprocess.run([str(python), "-m", "agent", "check-config",
                          str(extracted / "usr/share/tec-agent/tec-agent.toml")],
                         check=False, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "mqtt.password_file" in bad.stdout and "mqtt.tls_ca_file" in bad.stdout
    # With its files in place it is valid, with TLS and authentication on.
    (tmp_path / "mqtt.pass").write_text("s3cret\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = tmp_path / "tec-agent.toml"
    cfg.write_text(default.replace("/etc/tec-agent/", f"{tmp_path}/")
                   .replace("/var/lib/tec-agent/", f"{tmp_path}/"))
    ok = sh(python, "-m", "agent", "check-config", cfg)
    assert "TLS on" in ok.stdout and "auth on" in ok.stdout and ":8883" in ok.stdout


_AGENT_ATTEMPTS = r"""
import errno, json, os
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as exc:
        out[name] = "EACCES/EPERM" if exc.errno in (errno.EACCES, errno.EPERM) else repr(exc)
def plant():
    with open("remote-keys/evil.pub", "w") as fh:
        fh.write("planted")
def replace_config():  # as agent/remote/apply.write_atomic, with relative names
    tmp = ".tec-agent.toml.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("written by the agent\n")
    os.replace(tmp, "tec-agent.toml")
attempt("rename remote-keys", lambda: os.rename("remote-keys", "remote-keys.old"))
attempt("plant a key", plant)
attempt("unlink remote-keys/desk.pub", lambda: os.unlink("remote-keys/desk.pub"))
attempt("replace tec-agent.toml", replace_config)
print(json.dumps(out))
"""


def _as_agent(etc: Path, uid: int, gid: int) -> dict[str, str]:
    """Try, as the agent's uid and group (no other groups) from inside ``etc``, to replace
    the trusted keys and to rewrite the config the way a remote push does."""
    proc = subprocess.run(["/usr/bin/python3", "-c", _AGENT_ATTEMPTS], cwd=etc, user=uid,
                          group=gid, extra_groups=[], capture_output=True, text=True,
                          check=True, timeout=60)
    return json.loads(proc.stdout)


def _scratch_root(root: Path) -> None:
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("")
    (root / "var/lib/dpkg/available").write_text("")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\ndialout:*::\n")


def dpkg(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return sh("dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends",
              "--force-unsafe-io",
              "--log=/dev/null", *args)


@pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root installs need root (file ownership)")
def test_install_upgrade_remove_purge_in_a_scratch_root(deb: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    _scratch_root(root)
    dpkg(root, "-i", deb)

    users = {line.split(":")[0]: line.split(":")
             for line in (root / "etc/passwd").read_text().splitlines()}
    user = users["tec-agent"]
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000 and user[5] == "/var/lib/tec-agent" and user[6] == "/usr/sbin/nologin"
    groups = {line.split(":")[0]: line.split(":")[3].split(",")
              for line in (root / "etc/group").read_text().splitlines()}
    for g in ("gpio", "dialout", "bluetooth"):
        assert "tec-agent" in groups[g], g
    etc, state = root / "etc/tec-agent", root / "var/lib/tec-agent"
    conf = etc / "tec-agent.toml"
    # Group-writable: a signed remote push replaces tec-agent.toml (temp file + rename);
    # sticky, so the agent cannot move what it does not own; and the mode the unit's
    # ConfigurationDirectoryMode= names (systemd complains at every start otherwise).
    assert (etc.stat().st_uid, etc.stat().st_gid,
            stat.S_IMODE(etc.stat().st_mode)) == (0, gid, 0o1770)
    unit_mode = re.search(r"^ConfigurationDirectoryMode=(\d+)$",
                          (root / "lib/systemd/system/tec-agent.service").read_text(), re.M)
    assert unit_mode and int(unit_mode.group(1), 8) == stat.S_IMODE(etc.stat().st_mode)
    # The trusted support keys are root's alone ...
    keys = etc / "remote-keys"
    assert (keys.stat().st_uid, keys.stat().st_gid,
            stat.S_IMODE(keys.stat().st_mode)) == (0, 0, 0o755)
    # ... and a process of the agent (its uid and group) can neither move them aside and
    # plant its own, nor plant one inside; it can still replace its config file.
    (keys / "desk.pub").write_text("trusted\n")
    attempt = _as_agent(etc, uid, gid)
    assert attempt == {"rename remote-keys": "EACCES/EPERM", "plant a key": "EACCES/EPERM",
                       "unlink remote-keys/desk.pub": "EACCES/EPERM",
                       "replace tec-agent.toml": "ok"}, attempt
    assert (keys / "desk.pub").read_text() == "trusted\n"
    assert sorted(p.name for p in keys.iterdir()) == ["desk.pub"]
    assert conf.read_text() == "written by the agent\n"
    conf.write_bytes((root / "usr/share/tec-agent/tec-agent.toml").read_bytes())
    os.chown(conf, uid, gid)
    os.chmod(conf, 0o600)
    assert (state.stat().st_uid, stat.S_IMODE(state.stat().st_mode)) == (uid, 0o750)
    assert (conf.stat().st_uid, stat.S_IMODE(conf.stat().st_mode)) == (uid, 0o600)
    assert conf.read_bytes() == (root / "usr/share/tec-agent/tec-agent.toml").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/tec-agent.service"
    assert os.readlink(wants) == "/lib/systemd/system/tec-agent.service"

    # Reinstall/upgrade: the provisioned config and the event store are untouched.
    conf.write_text('hub_id = "hub-42"\n')
    (state / "events.db").write_bytes(b"pretend store")
    dpkg(root, "-i", deb)
    assert conf.read_text() == 'hub_id = "hub-42"\n'
    assert (state / "events.db").read_bytes() == b"pretend store"

    dpkg(root, "-r", "tec-agent")
    assert not (root / PREFIX).exists() and not (root / "usr/bin/tec-agent").exists()
    assert conf.exists() and (state / "events.db").exists()
    assert os.readlink(root / "etc/systemd/system/tec-agent.service") == "/dev/null"   # masked

    dpkg(root, "-P", "tec-agent")
    assert not etc.exists() and not state.exists()
    assert not wants.exists() and not (root / "etc/systemd/system/tec-agent.service").exists()
    assert "tec-agent:" in (root / "etc/passwd").read_text()      # the user is kept


@pytest.mark.skipif(shutil.which("lintian") is None,
                    reason="lintian is not installed"
                           " (apt-get install lintian; scripts/setup.sh --test does)")
def test_lintian_findings_are_fixed_or_explained(deb: Path) -> None:
    proc = subprocess.run(["lintian", "--fail-on", "error,warning", str(deb)],
                          check=False, capture_output=True, text=True, timeout=600)
    findings = [line for line in proc.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert proc.returncode == 0 and findings == [], proc.stdout[-3000:]
