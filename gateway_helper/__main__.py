"""python -m gateway_helper: the same as bin/ovn-k8s-gateway-helper."""
from gateway_helper.daemon import main

raise SystemExit(main())
