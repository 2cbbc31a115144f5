from cctv_daemon.cli import main

raise SystemExit(main())
