"""The dashboard's security matrices, against a real uvicorn server: authentication, read-only,
cross-site requests, hosts, headers, escaping of hostile data, parameters, redaction.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import httpx
import markupsafe
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backburner import Backburner
from backburner._job import Job, JobSpec
from backburner._options import DEFAULT_OPTIONS
from backburner.dashboard._present import DEFAULT_REDACT, MASK, Presenter
from backburner.dashboard._redact import QUERY_SECRETS, SecretNames, scrub_text

from ..e2e._uvicorn import Uvicorn
from ..e2e.apps._payloads import PAYLOADS, XSS_QUEUE
from ..jobs import noop
from .conftest import PASSWORD, USER, control

# Tests against the real server are marked e2e one by one: the redaction matrices at the end
# run in process, on every Python the unit tests run on.
e2e = pytest.mark.e2e

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
@e2e
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
@e2e
def test_wrong_credentials_are_refused(server: Uvicorn, credentials: tuple[str, str]) -> None:
    with httpx.Client(base_url=server.base_url, auth=credentials) as client:
        assert client.get("/bb/").status_code == 401
        assert client.get("/bb/api/overview").status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Basic", "Basic !!!", "Bearer abc", "Basic " + "YWRtaW4=", "basic YWRtaW46czNjcmV0Cg=="],
)
@e2e
def test_malformed_authorization_headers_are_refused(server: Uvicorn, header: str) -> None:
    with server.client() as client:
        assert client.get("/bb/", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("path", GET_ROUTES)
@e2e
def test_a_dashboard_without_auth_refuses_everyone_even_with_credentials(
    server: Uvicorn, path: str
) -> None:
    with httpx.Client(base_url=server.base_url, auth=(USER, PASSWORD)) as client:
        response = client.get("/none" + path)
        assert response.status_code == 403
        _assert_secure_headers(response)
        assert "no authentication configured" in response.text
        assert client.post("/none/api/actions/pause", data={"queue": "default"}).status_code == 403


@e2e
def test_the_auth_callable_decides_and_its_refusal_is_403(server: Uvicorn) -> None:
    with server.client() as client:
        assert client.get("/hook/").status_code == 403
        assert client.get("/hook/", headers={"X-Token": "wrong"}).status_code == 403
        response = client.get("/hook/api/overview", headers={"X-Token": "t0ken"})
        assert response.status_code == 200
        _assert_secure_headers(response)


@e2e
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


@e2e
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


@e2e
def test_a_refusal_before_sign_in_has_no_navigation_nor_csrf_token(
    server: Uvicorn, client: httpx.Client
) -> None:
    token = client.get("/bb/api/session").json()["csrf_token"]
    signed_in = client.get("/bb/jobs/nope-1")
    assert signed_in.status_code == 404
    assert "<nav>" in signed_in.text  # the pages' layout, once signed in
    with server.client() as anonymous:
        for path in ("/bb/jobs/nope-1", "/bb/", "/none/jobs/nope-1"):
            refused = anonymous.get(path)
            assert refused.status_code in (401, 403)
            assert "<nav>" not in refused.text
            assert token not in refused.text
            assert "csrf" not in refused.text


# Read-only.


@e2e
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
@e2e
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


@e2e
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


@e2e
def test_mutating_routes_take_post_only(client: httpx.Client) -> None:
    for action in ACTIONS:
        for method in ("GET", "PUT", "DELETE"):
            assert client.request(method, f"/bb/api/actions/{action}").status_code == 405


@e2e
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


@e2e
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


@e2e
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


@e2e
def test_an_unknown_queue_or_job_echoed_back_is_escaped(client: httpx.Client) -> None:
    for path in (
        f"/pending?queue={PAYLOADS[1]}",
        f"/jobs/{PAYLOADS[0]}",
        f"/dead?limit={PAYLOADS[2]}",
    ):
        response = client.get("/bb" + path)
        assert response.status_code in (400, 404)
        _assert_inert_html(response.text, path)


@e2e
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


@e2e
def test_metrics_escape_label_values_and_declare_every_family(client: httpx.Client) -> None:
    text = client.get("/bb/metrics").text
    families = re.findall(r"^# TYPE (\S+) (counter|gauge|histogram)$", text, re.M)
    helps = re.findall(r"^# HELP (\S+) .+$", text, re.M)
    assert [name for name, _ in families] == helps
    assert len(families) >= 12
    histograms = {name for name, kind in families if kind == "histogram"}
    label = r'\w+="([^"\\\n]|\\.)*"'
    sample = re.compile(rf"^(\w+)(\{{({label}(,{label})*)?\}})? -?[0-9.e+]+$")
    for line in text.splitlines():
        if not line.startswith("#"):
            assert sample.match(line), line
            name = line.split("{")[0].split(" ")[0]
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in helps or family in histograms, line
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
@e2e
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


@e2e
def test_numbers_out_of_range_are_clamped(client: httpx.Client) -> None:
    data = client.get("/bb/api/dead?limit=100000&offset=-5").json()
    assert (data["limit"], data["offset"]) == (200, 0)
    assert client.get("/bb/api/dead?limit=0").json()["limit"] == 1
    assert client.get("/bb/api/dead?offset=99999999").json()["offset"] == 1_000_000
    assert client.get("/bb/api/overview?minutes=0").status_code == 200
    assert 'data-poll="60.0"' in client.get("/bb/?poll=3600").text
    assert 'data-poll="1.0"' in client.get("/bb/?poll=0.001").text
    assert 'data-poll="0.0"' in client.get("/bb/?poll=0").text


@e2e
def test_an_unknown_queue_is_a_400_naming_the_queues(client: httpx.Client) -> None:
    response = client.get("/bb/api/pending?queue=nope")
    assert response.status_code == 400
    assert "no queue named 'nope'" in response.json()["error"]


# Redaction.


@e2e
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
        assert args[:2] == ["to='ada@example.com'", "password=••••••"]  # bound to its name
        assert "card='<card>'" in args  # the redact_hook's choice
        assert "api_token=••••••" in args  # `token` in the name masks the whole value
        default_view = client.get(f"/bb/api/jobs/{job_id}").json()["job"]["args"]
        assert "card='4111'" in default_view  # no hook on /bb
    finally:
        control(server, "release", key="secret:ada@example.com")


@e2e
def test_hidden_fields_url_passwords_query_tokens_and_bearer_credentials_never_show(
    server: Uvicorn, client: httpx.Client
) -> None:
    job_id = control(server, "leaky", user="grace")["id"]
    leaky = ("hunter-dsn", "p@ss/w0rd", "w0rd", "hunter-key", "hunter-bearer")
    try:
        pages = [client.get(f"/bb{path}").text for path in ("/busy", f"/jobs/{job_id}")]
        answers = [client.get(f"/bb/api{path}").json() for path in ("/busy", f"/jobs/{job_id}")]
        for view in pages + [json.dumps(answer, ensure_ascii=False) for answer in answers]:
            for secret in leaky:
                assert secret not in view
        assert answers[1]["job"]["args"] == [
            f"account=Account(user='grace', dsn={MASK})",
            f"url='postgres://app:{MASK}@db/app'",
            f"callback='https://api.example/cb?api_key={MASK}&page=1'",
            f"header='Authorization: Bearer {MASK}'",
        ]
    finally:
        control(server, "release", key="leaky:grace")
    # Its return value holds the hidden field: shown, and masked there too.
    done: dict[str, Any] = {}

    def succeeded() -> bool:
        done.update(client.get(f"/bb/api/jobs/{job_id}").json()["job"])
        return bool(done["status"] == "succeeded")

    server.wait_until("the leaky job's end", succeeded)
    assert done["result"] == f"'synced grace via {MASK}'"
    assert "hunter-dsn" not in client.get(f"/bb/jobs/{job_id}").text


# Redaction, in process: what counts as secret, and secrets written inside strings.


def _shown(*args: Any, fn: Any = None, **kwargs: Any) -> list[str]:
    """The arguments as the dashboard shows them, with the default ``redact`` names."""
    spec = JobSpec(fn or noop, True, DEFAULT_OPTIONS, "default")
    handle: Job[Any] = Job(spec, args, kwargs, None)
    return Presenter(DEFAULT_REDACT, None).arguments(handle)


@pytest.mark.parametrize(
    "name",
    [
        *("pwd", "db_pwd", "pin", "userPin", "PIN_CODE", "pin2", "passphrase", "pass", "db-pass"),
        *("dbPass", "sessionid", "SESSION_ID", "sessionId", "auth", "x-auth", "AuthHeader"),
        *("access_key", "AWS_ACCESS_KEY_ID", "accessKey", "password", "X-Api-Key"),
    ],
)
def test_common_secret_names_are_masked(name: str) -> None:
    assert _shown(**{name: "hunter22"}) == [f"{name}={MASK}"]


@pytest.mark.parametrize(
    "name",
    ["shipping", "compass", "author", "spinner", "passenger", "mapping", "bypass", "pinned"],
)
def test_a_short_secret_name_inside_another_word_is_not_a_secret(name: str) -> None:
    assert _shown(**{name: "plain"}) == [f"{name}='plain'"]


@dataclasses.dataclass
class Connection:
    host: str
    dsn: str = dataclasses.field(repr=False)
    pool: int = dataclasses.field(default=5, repr=False)


def test_dataclass_fields_the_app_declared_repr_false_are_masked() -> None:
    hidden = Connection("db", "dsn-hunter22")
    assert "dsn-hunter22" not in repr(hidden)  # what the app itself shows
    [shown] = _shown([hidden])
    assert shown == f"[Connection(host='db', dsn={MASK}, pool={MASK})]"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgres://app:p@ss/w0rd@db/app", f"postgres://app:{MASK}@db/app"),
        ("postgres://app:p@ss/w0rd@db", f"postgres://app:{MASK}@db"),
        ("redis://:s3:cr/et@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
        ("mysql://ada:pa?ss#wo@rd@db:3306/x", f"mysql://ada:{MASK}@db:3306/x"),
        ("amqp://ada@tenant:p@ss@broker/vhost", f"amqp://ada@tenant:{MASK}@broker/vhost"),
        ("see postgres://a:x@y@db and more", f"see postgres://a:{MASK}@db and more"),
        ("https://ada@example.com/path", "https://ada@example.com/path"),
        ("https://example.com:8443/a/b?c=d", "https://example.com:8443/a/b?c=d"),
    ],
)
def test_a_url_password_is_masked_whole_whatever_it_holds(url: str, masked: str) -> None:
    assert _shown(url) == [repr(masked)]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://api/v1?api_key=hunter22&page=2", f"https://api/v1?api_key={MASK}&page=2"),
        ("/cb?access_token=hunter22#top", f"/cb?access_token={MASK}#top"),
        ("https://s3/k?X-Amz-Signature=hunter22", f"https://s3/k?X-Amz-Signature={MASK}"),
        ("https://blob/c?sv=2020&sig=hunter22", f"https://blob/c?sv=2020&sig={MASK}"),
        ("https://api/x?api%5Fkey=hunter22", f"https://api/x?api%5Fkey={MASK}"),
        ("host=db password=hunter22 dbname=x", f"host=db password={MASK} dbname=x"),
        ("a=1;session_id=hunter22", f"a=1;session_id={MASK}"),
        ("token=hunter22", f"token={MASK}"),
        ("https://api/v1?page=2&sort=name", "https://api/v1?page=2&sort=name"),
        ("Authorization: Bearer hunter22.x-y", f"Authorization: Bearer {MASK}"),
        ("-H 'authorization: Basic dXNlcjpodW50ZXIy'", f"-H 'authorization: Basic {MASK}'"),
        ("{'Authorization': 'Token hunter22'}", f"{{'Authorization': 'Token {MASK}'}}"),
        ("Proxy-Authorization: hunter22", f"Proxy-Authorization: {MASK}"),
        ("sent Bearer hunter22 twice", f"sent Bearer {MASK} twice"),
        ("Basic dXNlcjpodW50ZXIy", f"Basic {MASK}"),
        ("Basic setup failed", "Basic setup failed"),
    ],
)
def test_tokens_in_query_strings_and_authorization_credentials_are_masked(
    text: str, masked: str
) -> None:
    assert _shown(text) == [repr(masked)]


# Any character but spaces (a password with one, unencoded, cannot be told from the text
# after it), with the ones URLs treat specially drawn often.
_NOT_SPACE = st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc"))
_PASSWORD_CHARS = _NOT_SPACE | st.sampled_from("@/:?#&=%")


@given(
    user=st.text(alphabet="abcxyz_.-@", max_size=8),
    password=st.text(alphabet=_PASSWORD_CHARS, min_size=1, max_size=24),
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,12}(:[0-9]{1,5})?", fullmatch=True),
    tail=st.sampled_from(["", "/", "/app", "/app?sslmode=require", "?x=1"]),
)
def test_no_generated_url_password_ever_shows(
    user: str, password: str, host: str, tail: str
) -> None:
    url = f"postgres://{user}:{password}@{host}{tail}"
    masked = f"postgres://{user}:{MASK}@{host}{tail}"
    assert _shown(url) == [repr(masked)]
    assert _shown(f"could not connect to {url}: refused") == [
        repr(f"could not connect to {masked}: refused")
    ]
    # In error text too (a message, a traceback), where no argument named it.
    assert scrub_text(f"FATAL {url}", SecretNames(DEFAULT_REDACT), []) == f"FATAL {masked}"


@given(
    name=st.sampled_from(["api_key", "token", "signature", "X-Amz-Signature", "password"]),
    value=st.text(alphabet=_NOT_SPACE.filter(lambda char: char not in "&#"), min_size=1),
    before=st.sampled_from(["https://h/p?", "https://h/p?a=1&", "x "]),
)
def test_no_generated_secret_query_value_ever_shows(name: str, value: str, before: str) -> None:
    text = f"{before}{name}={value}&next=1"
    masked = f"{before}{name}={MASK}&next=1"
    assert _shown(text) == [repr(masked)]
    assert scrub_text(text, SecretNames(DEFAULT_REDACT + QUERY_SECRETS), []) == masked


async def login(user: str, password: str, url: str) -> None:
    raise ConnectionError(f"{url}: refused, Authorization: Bearer t0k3n-hunter22")


@pytest.mark.anyio
async def test_secrets_written_in_errors_and_tracebacks_are_masked() -> None:
    async with Backburner() as bg:
        job = bg.enqueue(login, "ada", "pw", "https://ada:p@ss/w0rd@api/x?api_key=k3y-hunter22")
        await bg.join()
    data = Presenter(DEFAULT_REDACT, None).job(job, in_failures=True, detail=True)
    for text in (data["error"], data["traceback"]):
        for secret in ("p@ss", "w0rd", "k3y-hunter22", "t0k3n-hunter22"):
            assert secret not in text
    assert data["error"] == (
        f"ConnectionError: https://ada:{MASK}@api/x?api_key={MASK} refused, "  # (to the space)
        f"Authorization: Bearer {MASK}"
    )
