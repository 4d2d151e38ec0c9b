"""`python -m sandbox.kubeapi`: run the test API server in the foreground."""

from sandbox.kubeapi.cli import main

raise SystemExit(main())
