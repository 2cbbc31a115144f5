from cctv_daemon.cli.main import main

raise SystemExit(main())
