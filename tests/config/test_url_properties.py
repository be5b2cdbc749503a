"""Round trips of generated option sets through smtp:// URLs, in both spellings."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import given
from hypothesis import strategies as st

from rawsmtp.config._options import make_options
from rawsmtp.config._url import options_from_url

# (snake_case, camelCase, strategy, is a time: camelCase takes milliseconds)
FIELDS: list[tuple[str, str, st.SearchStrategy[Any], bool]] = [
    ("max_connections", "maxConnections", st.integers(1, 1000), False),
    ("max_messages", "maxMessages", st.integers(1, 10**6), False),
    ("rate_limit", "rateLimit", st.integers(1, 10**4), False),
    ("rate_delta", "rateDelta", st.integers(1, 10**5), True),
    ("connection_timeout", "connectionTimeout", st.integers(1, 10**6), True),
    ("greeting_timeout", "greetingTimeout", st.integers(1, 10**6), True),
    ("socket_timeout", "socketTimeout", st.integers(1, 10**6), True),
    ("ignore_tls", "ignoreTLS", st.booleans(), False),
    ("debug", "debug", st.booleans(), False),
]


@given(
    st.dictionaries(
        st.sampled_from(range(len(FIELDS))), st.tuples(st.booleans(), st.integers()), max_size=9
    ),
    st.data(),
    st.sampled_from(["smtp", "smtps", "lmtp"]),
    st.text(min_size=1, max_size=12),
    st.text(max_size=12),
    st.sampled_from(["//", ""]),
)
def test_generated_option_sets_round_trip(
    chosen: dict[int, tuple[bool, int]],
    data: st.DataObject,
    scheme: str,
    user: str,
    pw: str,
    slashes: str,
) -> None:
    """Either URL form: with ``//`` and Nodemailer's ``smtp:user:pass@host`` without."""
    query: dict[str, str] = {}
    expected: dict[str, Any] = {}
    for index, (camel, _) in chosen.items():
        snake, camel_name, strategy, is_time = FIELDS[index]
        value = data.draw(strategy)
        if isinstance(value, bool):
            query[camel_name if camel else snake] = "true" if value else "false"
            expected[snake] = value
        elif is_time:
            query[camel_name if camel else snake] = str(value)
            expected[snake] = value / 1000 if camel and camel_name != snake else float(value)
        else:
            query[camel_name if camel else snake] = str(value)
            expected[snake] = value
    url = f"{scheme}:{slashes}{quote(user, safe='')}:{quote(pw, safe='')}@mail.example.com:2525"
    if query:
        url += "?" + urlencode(query)
    options = make_options(**options_from_url(url))
    assert options.host == "mail.example.com" and options.port == 2525
    assert options.secure is (scheme == "smtps") and options.lmtp is (scheme == "lmtp")
    assert options.auth == {"user": user, "pass": pw}
    for name, value in expected.items():
        assert getattr(options, name) == value, name
