from flowtel.cli import main

raise SystemExit(main())
