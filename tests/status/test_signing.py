"""Signed status URLs: an HMAC of the job id and an expiry, checked in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs

import pytest

from backburner.status._signing import URLSigner

SECRET = "x" * 32
NOW = 1_767_225_600.0


def parts(query: str) -> tuple[str, str]:
    fields = parse_qs(query, strict_parsing=True)
    return fields["expires"][0], fields["sig"][0]


def test_a_signed_query_opens_its_job_until_it_expires() -> None:
    signer = URLSigner(SECRET)
    expires, sig = parts(signer.query("job-1", NOW, 60))

    assert expires == str(int(NOW) + 60)
    assert signer.refusal("job-1", expires, sig, NOW) is None
    assert signer.refusal("job-1", expires, sig, NOW + 60) is None  # the last second counts
    assert "expired" in (signer.refusal("job-1", expires, sig, NOW + 61) or "")


def test_the_signature_is_hmac_sha256_of_a_label_the_id_and_the_expiry() -> None:
    expires, sig = parts(URLSigner(SECRET).query("job-1", NOW, 60))
    message = b"backburner-status-v1\x00job-1\x00" + expires.encode()
    digest = hmac.new(SECRET.encode(), message, hashlib.sha256).digest()

    assert sig == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_a_signature_opens_no_other_job() -> None:
    signer = URLSigner(SECRET)
    expires, sig = parts(signer.query("job-1", NOW, 60))

    assert "does not match" in (signer.refusal("job-2", expires, sig, NOW) or "")


@pytest.mark.parametrize("part", ["expires", "sig"])
def test_a_tampered_query_is_refused(part: str) -> None:
    signer = URLSigner(SECRET)
    expires, sig = parts(signer.query("job-1", NOW, 60))
    if part == "expires":
        expires = str(int(expires) + 3600)  # a longer life than was signed
    else:
        sig = sig[:-1] + ("A" if sig[-1] != "A" else "B")

    assert "does not match" in (signer.refusal("job-1", expires, sig, NOW) or "")


def test_another_secrets_signature_is_refused() -> None:
    expires, sig = parts(URLSigner("y" * 32).query("job-1", NOW, 60))

    assert URLSigner(SECRET).refusal("job-1", expires, sig, NOW) is not None


@pytest.mark.parametrize(
    ("expires", "sig"),
    [(None, "abc"), ("123", None), ("", ""), ("-5", "abc"), ("1e9", "abc"), ("١٢٣", "abc"),
     ("12345678901234", "abc"), ("123", "é")],
)  # fmt: skip
def test_malformed_queries_are_refused(expires: str | None, sig: str | None) -> None:
    assert URLSigner(SECRET).refusal("job-1", expires, sig, NOW) is not None


def test_a_short_secret_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(ValueError, match=r"10 bytes.*at least 32.*secrets\.token_urlsafe"):
        URLSigner("s" * 10)


@pytest.mark.parametrize("secret", [123, None, ["x" * 32]])
def test_a_secret_that_is_not_text_or_bytes_is_a_type_error(secret: object) -> None:
    with pytest.raises(TypeError, match="secret must be a str or bytes"):
        URLSigner(secret)  # type: ignore[arg-type]


@pytest.mark.parametrize("expires_in", [0, -1, float("inf"), float("nan")])
def test_a_bad_lifetime_is_refused(expires_in: float) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        URLSigner(SECRET).query("job-1", NOW, expires_in)


def test_the_signer_does_not_show_its_secret() -> None:
    assert SECRET not in repr(URLSigner(SECRET))
