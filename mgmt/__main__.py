"""``python -m mgmt serve ...``: run the management server (also the ``cumulo-mgmt`` console script);
``python -m mgmt local``: the same with a simulated zone, for ``make run``."""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import trio

from mgmt.process import tune_gc

from . import logs
from .server import ServerConfig, StartupError, serve
from .settings import SettingError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgmt", description="Cumulo management server")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the management server")
    run.add_argument("--config", help="TOML file with the same settings as the flags")
    run.add_argument("--data-dir", help="where the embedded database and state live (default ./data)")
    run.add_argument("--db", help="database URL (default: SQLite in the data directory); postgresql://...")
    run.add_argument("--agent-port", type=int, help="port for agents (default 8250)")
    run.add_argument("--api-port", type=int, help="port for the HTTP API (default 8080)")
    run.add_argument("--bind", help="address to listen on (default: all)")
    run.add_argument("--zone-config", help="zone description file (TOML) applied at start")
    run.add_argument("--api-cert", help="PEM certificate for HTTPS on the API port (with --api-key)")
    run.add_argument("--api-key", help="PEM private key of --api-cert")
    run.add_argument("--peer-port", type=int,
                     help="port other management servers forward host commands to (default 9090; opened "
                          "only on PostgreSQL, where several servers may share the database)")
    run.add_argument("--advertise", help="address peers and agents reach this server at (default: the bind "
                                         "address when it names one, else the host name)")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub.add_parser("local", help="run the server with a simulated zone in this process (make run); "
                                 "environment: API_PORT, AGENT_PORT, DATA_DIR, HOSTS, BIND")
    token = sub.add_parser("agent-token", help="print a registration token for new hosts (python -m agent "
                                               "run --token TOKEN gets its certificate with it)")
    token.add_argument("--data-dir", default="./data", help="the server's data directory (default ./data)")
    token.add_argument("--db", help="database URL (default: SQLite in the data directory)")
    token.add_argument("--uses", type=int, default=1, help="hosts that may enroll with it (default 1)")
    token.add_argument("--validity", type=int, default=86400, help="seconds it stays valid (default 86400)")
    args = parser.parse_args(argv)
    if args.command == "local":
        from .local import main as local_main

        return local_main()
    if args.command == "agent-token":
        return agent_token(args)
    values: dict[str, object] = {}
    try:
        if args.config:
            values.update(tomllib.loads(Path(args.config).read_text()))
        known = {f.name for f in fields(ServerConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{args.config}: unknown settings {', '.join(unknown)}")
        values.update({k: v for k, v in vars(args).items() if k in known and v is not None})
        config = ServerConfig(**values)  # type: ignore[arg-type]
    except (OSError, ValueError, tomllib.TOMLDecodeError) as e:
        print(f"python -m mgmt: {e}", file=sys.stderr)
        return 2
    logs.configure(args.log_level)
    try:
        tune_gc()
        return trio.run(serve, config)
    except (SettingError, StartupError) as e:
        print(f"python -m mgmt: {e}", file=sys.stderr)
        return 2


def agent_token(args: argparse.Namespace) -> int:
    """``python -m mgmt agent-token``: a token from this cloud's CA and database, on standard output."""
    import datetime

    from .db.database import Database, sqlite_url
    from .security.ca import CertificateAuthority, CertificateError
    from .security.trust import create_token

    if not 1 <= args.uses <= 100_000 or not 60 <= args.validity <= 366 * 86400:
        print("python -m mgmt agent-token: --uses is 1..100000, --validity 60 s..366 days", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir)
    try:
        if not (data_dir / "ca" / "ca-cert.pem").exists():
            raise OSError(f"{data_dir / 'ca'}: no CA there yet; start the server on this data directory once")
        ca = CertificateAuthority.load_or_create(data_dir / "ca")
        db = Database(args.db or sqlite_url(data_dir))
        db.migrate()
        with db.engine.begin() as conn:
            made = create_token(conn, ca.fingerprint, uses=args.uses,
                                validity=datetime.timedelta(seconds=args.validity))
        db.dispose()
    except (OSError, CertificateError) as e:
        print(f"python -m mgmt agent-token: {e}", file=sys.stderr)
        return 1
    print(made.token)
    print(f"good for {made.uses} host(s) until {made.expires:%Y-%m-%d %H:%M:%S} UTC", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
