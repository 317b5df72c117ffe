"""Links from our pages to the Prefect UI of an environment's workspace.

The workspace stores only its API URL; the UI lives next to it. A Prefect server serves its UI
from the same origin with the API under `/api`; Prefect Cloud serves it from `app.` instead of
`api.`, with the account and workspace in the path.
"""

import re
from urllib.parse import urlsplit, urlunsplit

_CLOUD_PATH = re.compile(r"^/api/accounts/(?P<account>[^/]+)/workspaces/(?P<workspace>[^/]+)/?$")


def prefect_ui_url(api_url, flow_run_id):
    """The Prefect UI page of flow run `flow_run_id` in the workspace whose API is `api_url`."""
    parts = urlsplit(api_url)
    cloud = _CLOUD_PATH.match(parts.path)
    if cloud:
        host = parts.netloc
        if host.startswith("api."):
            host = "app." + host.removeprefix("api.")
        path = f"/account/{cloud['account']}/workspace/{cloud['workspace']}"
    else:
        host = parts.netloc
        path = parts.path.rstrip("/").removesuffix("/api")
    return urlunsplit((parts.scheme, host, f"{path}/runs/flow-run/{flow_run_id}", "", ""))
