"""`python -m ovn_k8s.kubeapi`: run the test API server in the foreground."""

from ovn_k8s.kubeapi.cli import main

raise SystemExit(main())
