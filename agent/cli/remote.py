"""``tec-agent remote``: support staff push signed configs and commands to hubs.

Exit codes: 0 accepted / ok, 1 rejected or rolled back by the hub, 2 a local problem
(unreadable file, bad key, broker refused us), 3 no answer from the hub in time.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from agent.errors import AgentError, ConfigError

EXIT_REJECTED, EXIT_LOCAL, EXIT_TIMEOUT = 1, 2, 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remote", help="signed remote config and commands (support staff)")
    rsub = p.add_subparsers(dest="remote_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--hub", required=True, help="hub id")
        q.add_argument("--topic-prefix", default="",
                       help="tenant level above tec/v1 (the hub's mqtt.topic_prefix; default "
                            "none)")
        broker(q)

    def broker(q: argparse.ArgumentParser) -> None:
        q.add_argument("--broker", default=os.environ.get("TEC_REMOTE_BROKER", "mqtt://127.0.0.1:1883"),
                       help="mqtt[s]://user@host:port (default $TEC_REMOTE_BROKER or mqtt://127.0.0.1:1883)")
        q.add_argument("--password-file", help="first line is the broker password")
        q.add_argument("--ca-file", help="CA bundle for mqtts:// (default: the system's)")
        q.add_argument("--insecure", action="store_true",
                       help="allow plaintext mqtt:// to a broker off this machine (refused "
                            "otherwise: use mqtts://)")

    def timeout(q: argparse.ArgumentParser) -> None:
        q.add_argument("--timeout", type=float,
                       help="seconds to wait for the hub's answer (default: push-config "
                            "120, cmd 60, get-config 5)")

    def signing(q: argparse.ArgumentParser) -> None:
        q.add_argument("--key", required=True, help="private key file (ID.key from keygen)")
        q.add_argument("--key-id", help="default: the key file name without .key")
        q.add_argument("--key-passphrase-file", metavar="FILE",
                       help="first line is the key's passphrase (an encrypted key without "
                            "it: asked for in a terminal, an error otherwise)")
        q.add_argument("--ttl", type=float,
                       help="seconds the message stays valid (default: push-config "
                            "30 days, cmd 300)")
        q.add_argument("--version", type=int, help="explicit version (default: time in µs)")

    q = rsub.add_parser("push-config", help="push a config (TOML or JSON) and wait for the result",
                        description="Push a config and wait for the hub's answer. FILE may be "
                                    "what get-config wrote (JSON, or TOML with --toml), edited: "
                                    "secrets left as \"***\" keep the hub's own values.")
    q.add_argument("file", metavar="FILE",
                   help="TOML or JSON (.json); get-config's output is accepted as it is")
    q.add_argument("--merge", action="store_true",
                   help="FILE is partial: merge it onto the hub's config (RFC 7396; null deletes)")
    common(q)
    timeout(q)
    signing(q)
    q.set_defaults(func=cmd_push_config)

    q = rsub.add_parser("cmd", help="run a command on a hub and print its result")
    q.add_argument("name", metavar="NAME",
                   help="test_alarm | walk_test | device_inventory | status | log_tail | restart")
    q.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="command argument (VALUE parsed as JSON when it is JSON), repeatable")
    common(q)
    timeout(q)
    signing(q)
    q.set_defaults(func=cmd_cmd)

    q = rsub.add_parser("get-config", help="print a hub's effective config (secrets redacted)")
    q.add_argument("--toml", action="store_true",
                   help="print the config as TOML, ready to edit and give to push-config "
                        "(default: the retained JSON document, which push-config also takes)")
    common(q)
    timeout(q)
    q.set_defaults(func=cmd_get_config)

    q = rsub.add_parser("keygen", help="make a support key pair: ID.key (secret) and ID.pub")
    q.add_argument("--key-id", required=True, metavar="ID",
                   help="the key's name, 1-64 of A-Z a-z 0-9 _ . - (e.g. desk-1): the files "
                        "are ID.key and ID.pub, and hubs name the signer by it")
    q.add_argument("--out", required=True, help="directory for ID.key and ID.pub")
    pw = q.add_mutually_exclusive_group()
    pw.add_argument("--passphrase-file", metavar="FILE",
                    help="encrypt ID.key with the first line of FILE (default in a terminal: "
                         "asked for)")
    pw.add_argument("--no-passphrase", action="store_true",
                    help="leave ID.key unencrypted (e.g. for a hardware-protected store)")
    q.set_defaults(func=cmd_keygen)

    from agent.cli.fleet import add_parser

    add_parser(rsub, broker)


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _read_secret_file(path: str, option: str, what: str) -> str:
    """First line of the file ``option`` names. A name that is not a file is not echoed:
    it may be the secret itself, typed where its file name belongs."""
    from agent.uplink.settings import read_password

    if not os.path.isfile(path):
        raise ConfigError(f"{option}: no such file (the name is not shown: it might be the "
                          f"{what} itself); give the name of a file whose first line is the "
                          f"{what}")
    return read_password(path, option)


def _passphrase_from_file(path: str, option: str = "--passphrase-file") -> bytes:
    value = _read_secret_file(path, option, "passphrase")
    if not value:
        raise ConfigError(f"{path}: the passphrase file's first line is empty")
    return value.encode("utf-8")


def _signing_key(args: argparse.Namespace) -> Any:
    """The support key, decrypted with --key-passphrase-file or a prompt if it must be."""
    from agent.remote.keys import PassphraseNeeded, load_private_key

    if args.key_passphrase_file:
        return load_private_key(args.key, _passphrase_from_file(args.key_passphrase_file,
                                                                "--key-passphrase-file"))
    try:
        return load_private_key(args.key)
    except PassphraseNeeded:
        if not _interactive():
            raise ConfigError(f"{args.key}: the key is encrypted: give --key-passphrase-file "
                              "(or run in a terminal to be asked)") from None
    return load_private_key(args.key, getpass.getpass(f"Passphrase for {args.key}: ").encode())


def _connect(args: argparse.Namespace) -> Any:
    from agent.remote.client import SupportClient, parse_broker_url
    from agent.uplink import topics

    why = topics.check_prefix(getattr(args, "topic_prefix", ""))
    if why:
        raise ConfigError(f"--topic-prefix {args.topic_prefix!r}: {why}")
    broker = parse_broker_url(args.broker)
    password = (_read_secret_file(args.password_file, "--password-file", "broker password")
                if args.password_file else None)
    client = SupportClient(broker, password, args.ca_file, insecure=args.insecure)
    client.connect()
    return client


def _load_doc(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    try:
        doc = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{p}: not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {exc}"
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a table at the top")
    return doc


_CURRENT_KEYS = {"hub_id", "version", "key_id", "applied_at", "ts", "config"}


def _config_of(doc: dict[str, Any], path: str, hub: str) -> dict[str, Any]:
    """The config to push from what FILE holds: a config, or get-config's document (the
    config plus its provenance), which is unwrapped."""
    inner = doc.get("config")
    if isinstance(inner, dict) and set(doc) <= _CURRENT_KEYS and "hub_id" in inner:
        doc = inner
    hub_id = doc.get("hub_id")
    if isinstance(hub_id, str) and hub_id != hub:
        raise ConfigError(f"{path} is the config of hub {hub_id!r} (its hub_id), not of "
                          f"--hub {hub}: push it to its own hub, or change hub_id in the file")
    return doc


def _parse_args(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--arg {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _send(args: argparse.Namespace, kind: str, body: dict[str, Any], ttl: float,
          timeout: float, retain: bool) -> int:
    from agent.remote.client import request
    from agent.remote.keys import key_id_from_path

    try:
        key = _signing_key(args)
        key_id = args.key_id or key_id_from_path(args.key)
        client = _connect(args)
    except AgentError as exc:
        _err(str(exc))
        return EXIT_LOCAL
    status = None
    try:
        status = _hub_status(client, args.hub, args.topic_prefix)
        what = ("to try the config and answer" if kind == "config"
                else f"to run {body['name']!r} and answer")
        print(f"waiting up to {timeout:g} s for hub {args.hub} {what}; "
              f"{_status_line(args.hub, status, args.topic_prefix)}", file=sys.stderr, flush=True)
        doc = request(client, key, key_id, args.hub, kind, body, ttl, timeout,
                      version=args.version, retain=retain, prefix=args.topic_prefix)
    except TimeoutError as exc:
        if retain:
            hint = " The config is retained: the hub applies it when it reconnects."
        elif status is None:
            hint = (" This broker has never seen the hub, so no session holds the command"
                    " for it.")
        else:
            hint = (" The command waits in the hub's MQTT session until it reconnects "
                    f"(valid for {ttl:g} s).")
        _err(f"no answer from hub {args.hub}: {exc}. "
             f"{_status_line(args.hub, status, args.topic_prefix)}.{hint}")
        return EXIT_TIMEOUT
    except AgentError as exc:
        _err(str(exc))
        return EXIT_LOCAL
    finally:
        client.close()
    print(json.dumps(doc, indent=2, sort_keys=True))
    ok = doc.get("status") in ("accepted", "ok")
    if not ok:
        _err(f"hub {args.hub} answered {doc.get('status')}: {doc.get('reason')}:"
             f" {doc.get('detail')}")
    return 0 if ok else EXIT_REJECTED


def _hub_status(client: Any, hub: str, prefix: str = "") -> dict[str, Any] | None:
    """The hub's retained ``status`` (online/offline, since when), or None if it has none."""
    from agent.uplink import topics

    topic = topics.status_topic(hub, prefix)
    try:
        client.subscribe(topic)
        # The broker sends a retained message right after the SUBACK; 3 s leaves room for a
        # loaded desk machine (1 s was missed under load in a test run).
        return client.wait_message(lambda t, d, r: t == topic and r, 3.0, f"retained {topic}")
    except (TimeoutError, AgentError):
        return None


def _status_line(hub: str, status: dict[str, Any] | None, prefix: str = "") -> str:
    """What the hub's retained status says, for a user wondering why it does not answer."""
    from agent.uplink import topics

    if status is None:
        return (f"hub {hub} has never published its status ({topics.status_topic(hub, prefix)}) on "
                "this broker: check --hub and --broker; the hub may be offline or not set up")
    state, ts = status.get("state"), status.get("ts", "?")
    if state == "online":
        return f"hub {hub} is online since {ts}"
    reason = f" ({status['reason']})" if status.get("reason") else ""
    return f"hub {hub} is {state} since {ts}{reason}: it may not answer until it reconnects"


def cmd_push_config(args: argparse.Namespace) -> int:
    from agent.remote.client import CONFIG_TTL_S

    try:
        doc = _config_of(_load_doc(args.file), args.file, args.hub)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_LOCAL
    body = {"mode": "merge" if args.merge else "full", "config": doc}
    # A full config is the hub's desired state: retained, so an offline hub gets it on
    # reconnect. A merge is a delta and rides the hub's persistent session instead.
    return _send(args, "config", body, args.ttl or CONFIG_TTL_S, args.timeout or 120.0,
                 retain=not args.merge)


def cmd_cmd(args: argparse.Namespace) -> int:
    from agent.remote.client import CMD_TTL_S

    try:
        cmd_args = _parse_args(args.arg)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_LOCAL
    body = {"name": args.name, "args": cmd_args}
    return _send(args, "cmd", body, args.ttl or CMD_TTL_S, args.timeout or 60.0, retain=False)


def cmd_get_config(args: argparse.Namespace) -> int:
    from agent.uplink import topics

    try:
        client = _connect(args)
    except AgentError as exc:
        _err(str(exc))
        return EXIT_LOCAL
    topic = topics.config_topic(args.hub, "current", args.topic_prefix)
    try:
        client.subscribe(topic)
        doc = client.wait_message(lambda t, d, r: t == topic, args.timeout or 5.0,
                                  f"retained {topic}")
    except TimeoutError:
        status = _hub_status(client, args.hub, args.topic_prefix)
        _err(f"no retained config/current of hub {args.hub} ({topic}) reached this client: "
             "remote management is off on the hub, it never connected, or the broker does "
             "not hand this retained message to this connection (RabbitMQ keeps retained "
             "messages per node: connect to the node the hub uses); "
             f"{_status_line(args.hub, status, args.topic_prefix)}")
        return EXIT_TIMEOUT
    except AgentError as exc:
        _err(str(exc))
        return EXIT_LOCAL
    finally:
        client.close()
    if args.toml:
        print(_as_toml(doc), end="")
    else:
        print(json.dumps(doc, indent=2, sort_keys=True))
    return 0


def _as_toml(doc: dict[str, Any]) -> str:
    from agent.remote.documents import REDACTED, without_nulls
    from agent.remote.toml_writer import dumps

    header = (f"Config of hub {doc.get('hub_id')}, version {doc.get('version')} (key "
              f"{doc.get('key_id') or '-'}, applied {doc.get('applied_at') or '-'}), read "
              f"{doc.get('ts')}.\n"
              f"Edit, then: tec-agent remote push-config FILE --hub {doc.get('hub_id')} ...\n"
              f"Secrets show as \"{REDACTED}\": leave them so to keep the hub's own values.\n"
              "Every default is spelt out here; the hub writes only the keys you change.")
    return dumps(without_nulls(doc.get("config") or {}), header)


def cmd_keygen(args: argparse.Namespace) -> int:
    from agent.remote.keys import generate_keypair

    try:
        passphrase = _keygen_passphrase(args)
        key_path, pub_path = generate_keypair(args.key_id, args.out, passphrase)
    except (ConfigError, OSError) as exc:
        _err(str(exc))
        return EXIT_LOCAL
    if passphrase is None and not args.no_passphrase:
        print(f"warning: {key_path} is not encrypted: anyone who copies the file can sign "
              "configs for your hubs (use --passphrase-file, or run keygen in a terminal)",
              file=sys.stderr)
    state = "encrypted" if passphrase else "NOT encrypted"
    print(f"private key: {key_path} ({state}; keep it secret; never copy it to a hub)")
    print(f"public key:  {pub_path} (install on hubs in [remote] keys_dir)")
    return 0


def _keygen_passphrase(args: argparse.Namespace) -> bytes | None:
    if args.no_passphrase:
        return None
    if args.passphrase_file:
        return _passphrase_from_file(args.passphrase_file)
    if not _interactive():
        return None
    first = getpass.getpass("Passphrase for the new key (empty: none): ")
    if not first:
        return None
    if getpass.getpass("Again: ") != first:
        raise ConfigError("the passphrases differ; no key written")
    return first.encode("utf-8")
