from moesd.cli import main

raise SystemExit(main())
