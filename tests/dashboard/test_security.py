"""The dashboard's security matrices, against a real uvicorn server: authentication, read-only,
cross-site requests, hosts, headers, escaping of hostile data, parameters, redaction.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import markupsafe
import pytest

from ..e2e._uvicorn import Uvicorn
from ..e2e.apps._payloads import PAYLOADS, XSS_QUEUE
from .conftest import PASSWORD, USER, control

pytestmark = pytest.mark.e2e

GET_ROUTES = (
    "/",
    "/busy",
    "/pending",
    "/scheduled",
    "/retries",
    "/dead",
    "/periodic",
    "/jobs/nope-1",
    "/api/overview",
    "/api/busy",
    "/api/pending",
    "/api/scheduled",
    "/api/retries",
    "/api/dead",
    "/api/periodic",
    "/api/jobs/nope-1",
    "/api/session",
    "/metrics",
    "/static/dashboard.js",
    "/static/dashboard.css",
    "/static/nothing-here",
    "/no/such/route",
)
ACTIONS = ("pause", "resume", "retry", "discard", "retry-all", "discard-all", "trigger", "cancel")
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
        "object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


def _assert_secure_headers(response: httpx.Response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    assert "unsafe-inline" not in response.headers["content-security-policy"]


def _same_origin(server: Uvicorn) -> dict[str, str]:
    return {"Origin": server.base_url, "Sec-Fetch-Site": "same-origin"}


# Authentication.


@pytest.mark.parametrize("path", GET_ROUTES)
def test_without_credentials_every_route_answers_401_with_a_basic_challenge(
    server: Uvicorn, path: str
) -> None:
    with server.client() as anonymous:
        for mount in ("/bb", "/ro", "/redact"):
            response = anonymous.get(mount + path)
            assert response.status_code == 401, (mount, path)
            assert (
                response.headers["www-authenticate"] == 'Basic realm="backburner", charset="UTF-8"'
            )
            _assert_secure_headers(response)
            for action in ACTIONS:
                posted = anonymous.post(
                    f"{mount}/api/actions/{action}", headers=_same_origin(server)
                )
                assert posted.status_code == 401


@pytest.mark.parametrize(
    "credentials",
    [(USER, "wrong"), ("someone", PASSWORD), (USER, ""), ("", ""), (USER, PASSWORD + "x")],
)
def test_wrong_credentials_are_refused(server: Uvicorn, credentials: tuple[str, str]) -> None:
    with httpx.Client(base_url=server.base_url, auth=credentials) as client:
        assert client.get("/bb/").status_code == 401
        assert client.get("/bb/api/overview").status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Basic", "Basic !!!", "Bearer abc", "Basic " + "YWRtaW4=", "basic YWRtaW46czNjcmV0Cg=="],
)
def test_malformed_authorization_headers_are_refused(server: Uvicorn, header: str) -> None:
    with server.client() as client:
        assert client.get("/bb/", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("path", GET_ROUTES)
def test_a_dashboard_without_auth_refuses_everyone_even_with_credentials(
    server: Uvicorn, path: str
) -> None:
    with httpx.Client(base_url=server.base_url, auth=(USER, PASSWORD)) as client:
        response = client.get("/none" + path)
        assert response.status_code == 403
        _assert_secure_headers(response)
        assert "no authentication configured" in response.text
        assert client.post("/none/api/actions/pause", data={"queue": "default"}).status_code == 403


def test_the_auth_callable_decides_and_its_refusal_is_403(server: Uvicorn) -> None:
    with server.client() as client:
        assert client.get("/hook/").status_code == 403
        assert client.get("/hook/", headers={"X-Token": "wrong"}).status_code == 403
        response = client.get("/hook/api/overview", headers={"X-Token": "t0ken"})
        assert response.status_code == 200
        _assert_secure_headers(response)


def test_insecure_local_serves_loopback_clients_but_not_through_a_proxy(server: Uvicorn) -> None:
    with server.client() as client:
        assert client.get("/local/").status_code == 200  # we are 127.0.0.1
        for header in (
            "X-Forwarded-For",
            "Forwarded",
            "X-Real-IP",
            "Via",
            "X-Forwarded-Proto",
            "X-Forwarded-Port",
            "X-Forwarded-Prefix",
            "CF-Connecting-IP",
            "True-Client-IP",
            "X-Client-IP",
        ):
            response = client.get("/local/", headers={header: "203.0.113.7"})
            assert response.status_code == 403, header
        # A DNS-rebound name reaches 127.0.0.1 with a foreign Host: refused.
        rebound = client.get("/local/", headers={"Host": "evil.example"})
        assert rebound.status_code == 400
        assert client.get("/local/", headers={"Host": "localhost"}).status_code == 200


def test_credentials_open_every_page(client: httpx.Client) -> None:
    for path in (
        GET_ROUTES[:7] + GET_ROUTES[8:15] + ("/api/session", "/metrics", "/static/dashboard.js")
    ):
        response = client.get("/bb" + path)
        assert response.status_code == 200, path
        _assert_secure_headers(response)
    for path in ("/jobs/nope-1", "/api/jobs/nope-1", "/static/nothing-here", "/no/such/route"):
        response = client.get("/bb" + path)
        assert response.status_code == 404, path
        _assert_secure_headers(response)


# Read-only.


def test_read_only_shows_no_action_and_refuses_every_one(
    server: Uvicorn, client: httpx.Client
) -> None:
    dead = control(server, "fail", message="read-only check")["id"]
    for path in ("/", "/busy", "/pending", "/scheduled", "/retries", "/dead", "/periodic"):
        page = client.get("/ro" + path)
        assert page.status_code == 200
        assert "<form" not in page.text, path
        assert "/api/actions/" not in page.text, path
        assert 'data-read-only="true"' in page.text
    assert "<form" not in client.get(f"/ro/jobs/{dead}").text
    for action in ACTIONS:
        fields = {"queue": "default", "job": dead, "name": "nightly_report"}
        response = client.post(
            f"/ro/api/actions/{action}", data=fields, headers=_same_origin(server)
        )
        assert response.status_code == 403, action
        _assert_secure_headers(response)
    assert dead in {job["id"] for job in client.get("/bb/api/dead").json()["jobs"]}
    assert not any(q["paused"] for q in client.get("/bb/api/overview").json()["queues"][:2])


# Cross-site requests and hosts.


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, False),
        ({"Sec-Fetch-Site": "same-site", "Origin": "http://sub.127.0.0.1.example"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "{base}.evil.example"}, False),
        ({"Origin": "{base}/path"}, False),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}, False),
        ({}, False),  # neither header and no token
        ({"X-Backburner-CSRF": "wrong"}, False),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "{base}"}, True),
        ({"Origin": "{base}"}, True),
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({"X-Backburner-CSRF": "{token}"}, True),
    ],
)
def test_cross_site_posts_are_refused_and_same_origin_ones_accepted(
    server: Uvicorn, client: httpx.Client, headers: dict[str, str], allowed: bool
) -> None:
    token = client.get("/bb/api/session").json()["csrf_token"]
    filled = {k: v.format(base=server.base_url, token=token) for k, v in headers.items()}
    response = client.post(
        "/bb/api/actions/pause",
        data={"queue": "mail"},
        headers={**filled, "Accept": "application/json"},
    )
    try:
        assert response.status_code == (200 if allowed else 403), response.text
        _assert_secure_headers(response)
        paused = {q["name"]: q["paused"] for q in client.get("/bb/api/overview").json()["queues"]}
        assert paused["mail"] is allowed
    finally:
        client.post("/bb/api/actions/resume", data={"queue": "mail"}, headers=_same_origin(server))


def test_a_form_post_with_the_token_field_and_no_headers_redirects_back(
    server: Uvicorn, client: httpx.Client
) -> None:
    token = client.get("/bb/api/session").json()["csrf_token"]
    fields = {"queue": "mail", "csrf_token": token, "next": "/bb/pending?queue=mail"}
    response = client.post("/bb/api/actions/pause", data=fields)
    assert (response.status_code, response.headers["location"]) == (303, "/bb/pending?queue=mail")
    for evil in ("https://evil.example/", "//evil.example/x", "/elsewhere", "/bb\\@evil", ""):
        answer = client.post("/bb/api/actions/resume", data={**fields, "next": evil})
        assert (answer.status_code, answer.headers["location"]) == (303, "/bb/"), evil


def test_mutating_routes_take_post_only(client: httpx.Client) -> None:
    for action in ACTIONS:
        for method in ("GET", "PUT", "DELETE"):
            assert client.request(method, f"/bb/api/actions/{action}").status_code == 405


def test_a_wrong_host_is_refused_on_every_route(server: Uvicorn, client: httpx.Client) -> None:
    for path in ("/", "/api/overview", "/metrics", "/static/dashboard.js"):
        assert client.get("/hosts" + path).status_code == 400  # Host: 127.0.0.1:port
        right = client.get("/hosts" + path, headers={"Host": "dash.example"})
        assert right.status_code == 200, path
    response = client.post(
        "/hosts/api/actions/pause",
        data={"queue": "mail"},
        headers={"Host": "evil.example", "Origin": "http://evil.example"},
    )
    assert response.status_code == 400
    _assert_secure_headers(response)
    ok = client.post(
        "/hosts/api/actions/resume",
        data={"queue": "mail"},
        headers={
            "Host": "dash.example",
            "Origin": "http://dash.example",
            "Accept": "application/json",
        },
    )
    assert ok.status_code == 200, ok.text


def test_actions_refuse_other_bodies_and_big_ones(server: Uvicorn, client: httpx.Client) -> None:
    headers = _same_origin(server)
    as_json = client.post("/bb/api/actions/pause", json={"queue": "mail"}, headers=headers)
    assert as_json.status_code == 415
    big = client.post("/bb/api/actions/pause", data={"queue": "x" * 20_000}, headers=headers)
    assert big.status_code == 413


# Escaping.


@pytest.fixture(scope="module")
def payload_jobs(server: Uvicorn) -> list[str]:
    """Jobs carrying every payload, in every list: dead, retrying, pending, scheduled."""
    ids: list[str] = control(server, "xss")["ids"]
    return ids


def _assert_inert_html(text: str, where: str) -> None:
    for payload in PAYLOADS:
        assert payload not in text, (where, payload)
    assert XSS_QUEUE not in text, where
    for needle in ("<script>window", "<img src=x", "<svg onload", 'onerror="window', "<b id=q>"):
        assert needle not in text, (where, needle)
    # The only scripts are our own file.
    assert re.findall(r"<script[^>]*>", text) in (
        [],
        ['<script src="/bb/static/dashboard.js" defer>'],
    )
    assert "javascript:" not in re.sub(r">[^<]*<", "><", text), where  # never in an attribute


def test_payloads_are_escaped_in_every_page(
    server: Uvicorn, client: httpx.Client, payload_jobs: list[str]
) -> None:
    pages = ["/", "/busy", "/pending", "/scheduled", "/retries", "/dead", "/periodic"]
    pages += [f"/pending?queue={XSS_QUEUE}", "/dead?queue=default&limit=200"]
    pages += [f"/jobs/{job_id}" for job_id in payload_jobs]
    seen_escaped = set()
    for path in pages:
        response = client.get("/bb" + path)
        assert response.status_code == 200, path
        _assert_inert_html(response.text, path)
        for payload in PAYLOADS:
            if str(markupsafe.escape(payload)) in response.text:
                seen_escaped.add(payload)
    assert seen_escaped == set(PAYLOADS)  # each was shown, as text


def test_an_unknown_queue_or_job_echoed_back_is_escaped(client: httpx.Client) -> None:
    for path in (
        f"/pending?queue={PAYLOADS[1]}",
        f"/jobs/{PAYLOADS[0]}",
        f"/dead?limit={PAYLOADS[2]}",
    ):
        response = client.get("/bb" + path)
        assert response.status_code in (400, 404)
        _assert_inert_html(response.text, path)


def test_payloads_stay_intact_and_inert_in_the_json(
    client: httpx.Client, payload_jobs: list[str]
) -> None:
    found: set[str] = set()
    paths = ["/api/overview", "/api/pending", "/api/scheduled", "/api/retries", "/api/dead"]
    paths += [f"/api/pending?queue={XSS_QUEUE}", "/api/periodic"]
    paths += [f"/api/jobs/{job_id}" for job_id in payload_jobs]
    for path in paths:
        response = client.get("/bb" + path)
        assert response.headers["content-type"] == "application/json"
        assert "<" not in response.text, path  # \u003c in the JSON
        assert ">" not in response.text, path
        text = json.dumps(response.json(), ensure_ascii=False)
        found |= {payload for payload in PAYLOADS if payload in text.replace('\\"', '"')}
    assert found == set(PAYLOADS)
    names = {q["name"] for q in client.get("/bb/api/overview").json()["queues"]}
    assert XSS_QUEUE in names


def test_metrics_escape_label_values_and_declare_every_family(client: httpx.Client) -> None:
    text = client.get("/bb/metrics").text
    families = re.findall(r"^# TYPE (\S+) (counter|gauge)$", text, re.M)
    helps = re.findall(r"^# HELP (\S+) .+$", text, re.M)
    assert [name for name, _ in families] == helps
    assert len(families) >= 12
    sample = re.compile(r'^(\w+)(\{(\w+="([^"\\\n]|\\.)*")?\})? -?[0-9.e+]+$')
    for line in text.splitlines():
        if not line.startswith("#"):
            assert sample.match(line), line
            assert line.split("{")[0].split(" ")[0] in helps, line
    assert f'backburner_workers{{queue="{XSS_QUEUE}"}} 1' in text
    assert 'backburner_queue_paused{queue="mail"} 0' in text


# Parameters.


@pytest.mark.parametrize(
    "query",
    [
        *("limit=x", "limit=1.5", "offset=1e5", "offset=--1", "limit=" + "9" * 40, "limit=%00"),
        *("poll=nan", "poll=abc", "minutes=inf", "minutes=1e999"),
    ],
)
def test_a_bad_number_is_a_400_that_says_which_parameter(client: httpx.Client, query: str) -> None:
    name = query.split("=")[0]
    for path in ("/bb/dead", "/bb/api/dead", "/bb/api/overview", "/bb/"):
        if name == "minutes" and "overview" not in path and path != "/bb/":
            continue
        if name in ("limit", "offset") and path in ("/bb/api/overview", "/bb/"):
            continue
        if name == "poll" and "/api/" in path:
            continue
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query)
        assert name in response.text
        _assert_secure_headers(response)


def test_numbers_out_of_range_are_clamped(client: httpx.Client) -> None:
    data = client.get("/bb/api/dead?limit=100000&offset=-5").json()
    assert (data["limit"], data["offset"]) == (200, 0)
    assert client.get("/bb/api/dead?limit=0").json()["limit"] == 1
    assert client.get("/bb/api/dead?offset=99999999").json()["offset"] == 1_000_000
    assert client.get("/bb/api/overview?minutes=0").status_code == 200
    assert 'data-poll="60.0"' in client.get("/bb/?poll=3600").text
    assert 'data-poll="1.0"' in client.get("/bb/?poll=0.001").text
    assert 'data-poll="0.0"' in client.get("/bb/?poll=0").text


def test_an_unknown_queue_is_a_400_naming_the_queues(client: httpx.Client) -> None:
    response = client.get("/bb/api/pending?queue=nope")
    assert response.status_code == 400
    assert "no queue named 'nope'" in response.json()["error"]


# Redaction.


def test_secret_arguments_are_masked_in_every_view(server: Uvicorn, client: httpx.Client) -> None:
    job_id = control(server, "secret", to="ada@example.com")["id"]
    try:
        views: list[Any] = [
            client.get("/redact/busy").text,
            client.get(f"/redact/jobs/{job_id}").text,
            client.get(f"/redact/api/jobs/{job_id}").json()["job"]["args"],
            client.get("/bb/api/busy").json(),
        ]
        for view in views:
            text = json.dumps(view) if not isinstance(view, str) else view
            assert "hunter2" not in text  # the positional `password`, masked by name
            assert "ada@example.com" in text
        args = client.get(f"/redact/api/jobs/{job_id}").json()["job"]["args"]
        assert args[1] == "••••••"
        assert "card='<card>'" in args  # the redact_hook's choice
        assert "api_token=••••••" in args  # `token` in the name masks the whole value
        default_view = client.get(f"/bb/api/jobs/{job_id}").json()["job"]["args"]
        assert "card='4111'" in default_view  # no hook on /bb
    finally:
        control(server, "release", key="secret:ada@example.com")
