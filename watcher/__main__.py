"""python -m watcher: the same as ovn-k8s-watcher."""
from watcher.daemon import main

raise SystemExit(main())
