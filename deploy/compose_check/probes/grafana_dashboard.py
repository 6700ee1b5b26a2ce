"""`python - GRAFANA_URL PASSWORD UID`: print, as JSON, the provisioned dashboard's title, its
panel count and the data source Grafana knows by the dashboard's uid (from inside the compose
network, signed in as admin)."""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from typing import Any


def get(url: str, password: str) -> Any:
    credentials = base64.b64encode(f"admin:{password}".encode()).decode()
    # Only ever the compose network's own Grafana, named by the check.
    request = urllib.request.Request(url, headers={  # noqa: S310
        "Authorization": f"Basic {credentials}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def main() -> None:
    base, password, uid = sys.argv[1:4]
    dashboard = get(f"{base}/api/dashboards/uid/{uid}", password)["dashboard"]
    source = get(f"{base}/api/datasources/uid/preorder-prometheus", password)
    print(json.dumps({"title": dashboard["title"], "panels": len(dashboard["panels"]),
                      "datasource": source["name"]}))


if __name__ == "__main__":
    main()
