from tfhash.cli import main

raise SystemExit(main())
