from cctv_daemon.cli.main import entry

raise SystemExit(entry())
