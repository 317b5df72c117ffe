"""A real OpenID Connect issuer for the SSO tests, and a plain-HTTP walk through its login.

`Issuer` runs `node tests/oidc/provider.mjs` (npm `oidc-provider`, installed by `make test` from
the repo's package-lock.json) on a free loopback port. Its users and their `groups` claims come
from a JSON file that the provider re-reads at every login, so a test changes someone's groups by
rewriting it. `login()` follows the authorization-code flow with PKCE the way a browser would:
the relying party's confirmation form, the issuer's login and consent forms, the redirect back.
"""

import json
import os
import selectors
import socket
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

REPO = Path(__file__).resolve().parents[2]
PROVIDER = REPO / "tests" / "oidc" / "provider.mjs"
CLIENT_ID = "pipelinehub"
CLIENT_SECRET = "pipelinehub-test-secret"
START_TIMEOUT = 30
LOGIN_PATH = "/accounts/oidc/okta/login/"  # the site's Okta login, as allauth routes it


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Issuer:
    def __init__(self, workdir, redirect_uri):
        self.users_file = Path(workdir) / "users.json"
        self.set_users({})
        env = dict(
            os.environ,
            OIDC_USERS_FILE=str(self.users_file),
            OIDC_REDIRECT_URIS=redirect_uri,
            OIDC_CLIENT_ID=CLIENT_ID,
            OIDC_CLIENT_SECRET=CLIENT_SECRET,
        )
        self.process = subprocess.Popen(
            ["node", str(PROVIDER), str(free_port())],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = self._wait_ready()

    def _wait_ready(self):
        line = ""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if selector.select(START_TIMEOUT):
                line = self.process.stdout.readline()
                if line.startswith("READY "):
                    return line.split()[1]
        self.stop()
        raise RuntimeError(f"the OIDC provider did not start (run `npm ci`?): {line!r}")

    def set_users(self, users):
        """Replace the issuer's users: {login: {"email", "name", "groups", ...}} (see provider)."""
        tmp = self.users_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(users))
        os.replace(tmp, self.users_file)

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


class _Forms(HTMLParser):
    def __init__(self, html):
        super().__init__()
        self.forms = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "inputs": {}})
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["inputs"][attrs["name"]] = attrs.get("value") or ""


def login(session, start_url, username, max_steps=20):
    """Log `username` in from the relying party's `start_url`; the last response and the URLs
    requested. Each login needs a fresh session: the issuer's own session would otherwise sign
    the previous user in again."""
    method, url, data, trace, posted_to_rp = "GET", start_url, None, [], False
    for _ in range(max_steps):
        response = session.request(method, url, data=data, allow_redirects=False, timeout=30)
        trace.append(f"{method} {url} -> {response.status_code}")
        if response.is_redirect:
            method, url, data = "GET", urljoin(url, response.headers["Location"]), None
            continue
        forms = _Forms(response.text).forms if response.status_code == 200 else []
        form = next((f for f in forms if "prompt" in f["inputs"]), None)
        if form is not None:  # the issuer's login or consent form
            data = dict(form["inputs"])
            if data["prompt"] == "login":
                data.update(login=username, password="any")  # users have no password
            method, url = "POST", urljoin(url, form["action"])
            continue
        form = next((f for f in forms if "csrfmiddlewaretoken" in f["inputs"]), None)
        if form is not None and not posted_to_rp and urlsplit(url).path == urlsplit(start_url).path:
            # allauth's "continue to Okta" confirmation form
            method, url, data = "POST", urljoin(url, form["action"] or url), dict(form["inputs"])
            posted_to_rp = True
            continue
        response.trace = trace
        return response
    raise RuntimeError("login did not finish:\n" + "\n".join(trace))


def sso_login(site_url, username, start_path=LOGIN_PATH, session=None):
    """A browser-like session (fresh unless given) logged in as `username` from `start_path`,
    and the page it ended on."""
    session = session or requests.Session()
    return session, login(session, site_url + start_path, username)
