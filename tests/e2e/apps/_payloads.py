"""XSS payloads the dashboard tests put into jobs (no side effects: tests import it too)."""

from __future__ import annotations

#: Every payload must come out inert: escaped in HTML, intact in JSON, never run.
PAYLOADS = (
    "<script>window.__xss='script'</script>",
    '"><img src=x onerror="window.__xss=\'img\'">',
    "'><svg onload=\"window.__xss='svg'\">",
    "</textarea></pre><script>window.__xss='close'</script>",
    "javascript:window.__xss='href'",
    "<a href=\"javascript:window.__xss='a'\">click</a>",
)
XSS_QUEUE = "<b id=q>" + PAYLOADS[0] + "</b>"
