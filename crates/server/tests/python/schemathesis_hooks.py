"""Schemathesis hooks for crates/server/tests/openapi.rs.

Keeps the run short without narrowing what is generated: a `/get_data` that took the compute
lock (`"lock": true`) would make every later `/get_data` of the same namespace and key wait
for up to its `max_wait_time` (as documented: up to an hour). So, as a well-behaved client
does, the hook releases the lock at once with a `/set_data` of the same namespace and key.
The cache refuses `|` in names on `/set_data` only, so such a lock cannot be released that
way: for those names a positive `max_wait_time` is shortened to 1 s before the request is
sent. Only the wait is shortened; the input's type and form are kept.
"""

import json
import re
import urllib.parse
import urllib.request

import schemathesis

_INT = re.compile(r"^[ \t\n\r]*[+]?[0-9]+[ \t\n\r]*$")


def _names(body):
    if not isinstance(body, dict):
        return None
    namespace, key = body.get("namespace"), body.get("key")
    if isinstance(namespace, str) and isinstance(key, str):
        return namespace, key
    return None


@schemathesis.hook
def before_call(context, case, **kwargs):
    if context.operation.path != "/get_data":
        return
    names = _names(case.body)
    if names is None or not ("|" in names[0] or "|" in names[1]):
        return
    wait = case.body.get("max_wait_time")
    if isinstance(wait, bool):
        return
    if isinstance(wait, (int, float)) and wait > 1:
        case.body["max_wait_time"] = 1
    elif isinstance(wait, str) and _INT.match(wait) and int(wait) > 1:
        case.body["max_wait_time"] = "1"


@schemathesis.hook
def after_call(context, case, response):
    if context.operation.path != "/get_data" or response.status_code != 200:
        return
    try:
        answer = json.loads(response.content)
    except ValueError:
        return
    names = _names(case.body)
    if not (isinstance(answer, dict) and answer.get("lock") is True and names):
        return
    if "|" in names[0] or "|" in names[1]:
        return  # its wait was shortened to 1 s instead
    url = urllib.parse.urljoin(response.request.url, "/set_data")
    body = json.dumps({"namespace": names[0], "key": names[1], "data": "released", "ttl": 1})
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as released:
        released.read()
