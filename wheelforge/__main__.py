from wheelforge.cli import main

raise SystemExit(main())
