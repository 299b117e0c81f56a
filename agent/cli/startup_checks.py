"""Warnings about a valid config: things that load but will not do what the installer meant.

``check-config`` prints them and ``run`` logs them at start. Errors (a config that cannot
run) are the loader's business (:mod:`agent.config`); these are the surprises found later
in the field: a remote push refused because the file cannot be written, a password file
every user of the hub can read, a ``[remote]`` section that is silently off.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from agent.config import Config

# What README.md and packaging/debian/README.Debian both say a secret file should be.
SECRET_FILE_MODES = "0600 owner tec-agent, or 0640 root:tec-agent"


def config_warnings(config: Config, doc: dict[str, Any], config_file: str | None) -> list[str]:
    """One line per warning, each starting with the key path it is about.

    ``doc`` is the file as read (to tell a key that was written from a default);
    ``config_file`` the file the agent runs with (the default ``remote.config_path``)."""
    out: list[str] = []
    remote = config.remote
    table = doc.get("remote")
    if remote.enabled:
        from agent.remote.apply import config_write_problem

        target = remote.config_path or config_file
        problem = config_write_problem(target)
        if problem:
            where = "remote.config_path" if remote.config_path else "remote"
            out.append(f"{where}: remote config is on but {problem}: an accepted push would be "
                       "refused (not_writable); give the agent a file it can replace (set "
                       "remote.config_path, or fix the owner/mode)")
        from agent.remote.keys import KeyStore

        if remote.keys_dir and not KeyStore(remote.keys_dir).key_ids():
            out.append(f"remote.keys_dir: no trusted key (<key_id>.pub) in {remote.keys_dir}: "
                       "every push and command would be rejected; copy the support desk's "
                       "public key there (`tec-agent remote keygen` makes it)")
    elif isinstance(table, dict) and "enabled" not in table and table:
        keys = ", ".join(sorted(table))
        out.append(f"remote: [remote] sets {keys} but not enabled: remote support is OFF (no "
                   "pushes or commands are accepted); add enabled = true to turn it on")
    elif isinstance(table, dict) and "keys_dir" in table:
        out.append("remote.enabled: false while keys_dir is set: remote support is OFF (no "
                   "pushes or commands are accepted); set enabled = true to turn it on")
    for key in ("password_file", "tls_key_file"):
        value = getattr(config.mqtt, key)
        if value:
            out.extend(_world_readable(f"mqtt.{key}", value))
    out.extend(_arc_warnings(config))
    out.extend(_fall_warnings(config))
    return out


def _fall_warnings(config: Config) -> list[str]:
    """A second model the position pairs with the shipped one (the neck) that is missing or
    fails its sha256: the agent would run the shipped model alone (it does not stop)."""
    fall = config.fall
    if not config.fall_detector_runs():
        return []
    from agent.fall.pair import second_model_problem

    problem = second_model_problem(fall)
    if problem is None:
        return []
    return [f"fall.position: the second fall model at the {fall.position} cannot be used "
            f"({problem}): fall detection would run on the shipped model alone, which finds "
            "fewer falls there (models/fall/README.md); reinstall the package"]


def _arc_warnings(config: Config) -> list[str]:
    """An ARC path that loads but is weaker than the installer may think."""
    from agent.config import _is_loopback

    arc = config.arc
    if not arc.enabled:
        return []
    out: list[str] = []
    for i, r in enumerate(arc.receivers):
        where = f"arc.receivers[{i}]"
        if r.key_file:
            out.extend(_world_readable(f"{where}.key_file", r.key_file))
        elif not _is_loopback(r.host):
            out.append(f"{where}.key_file: alarms to {r.host} go unencrypted (DC-09 without"
                       " AES): anyone on the path can read or replay them; ask the ARC for a key")
    if arc.supervision_s == 0:
        out.append("arc.supervision_s: 0: the ARC path is not supervised (no NULL link tests):"
                   " a dead receiver is only noticed when an alarm fails")
    if len(arc.receivers) == 1:
        out.append("arc.receivers: only one receiver: no backup if it is down")
    return out


def _world_readable(where: str, path: str) -> list[str]:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return []  # missing or unreadable: the loader already said so
    if mode & stat.S_IROTH:
        return [f"{where}: {path} is readable by every user of this machine (mode "
                f"{stat.S_IMODE(mode):04o}): chmod it to {SECRET_FILE_MODES}"]
    return []
