import logging

import pytest

from tasks.redact import RedactingFilter, redact, redact_http_logs

TOKEN = "run-token-for-redaction-tests-0123456789"


@pytest.mark.parametrize(
    "spelling", ["token=", "TOKEN=", "Token=", "tOkEn%3D", "%74oken=", "%54OKEN%3d", "admin_token="]
)
def test_token_values_are_hidden_in_any_case_and_percent_encoding(spelling):
    text = f"GET http://h/d?a=1&{spelling}{TOKEN}&b=2 and '{spelling}{TOKEN}'"
    assert redact(text) == f"GET http://h/d?a=1&{spelling}***&b=2 and '{spelling}***'"


def test_given_secrets_are_hidden_anywhere():
    assert redact(f"the token was {TOKEN}.", TOKEN, "") == "the token was ***."


def test_urllib3_debug_lines_carry_no_token(caplog):
    logger = logging.getLogger("urllib3.connectionpool")
    try:
        redact_http_logs()
        redact_http_logs()  # once only, however often it is called
        assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
        with caplog.at_level(logging.DEBUG, logger="urllib3"):
            # urllib3's own format of a request line
            logger.debug('%s://%s:%s "%s %s %s" %s %s', "http", "h", 80, "GET",
                         f"/datasets/x?token={TOKEN}", "HTTP/1.1", 200, 12)  # fmt: skip
        assert 'http://h:80 "GET /datasets/x?token=*** HTTP/1.1" 200 12' in caplog.text
        assert TOKEN not in caplog.text
    finally:
        for f in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
            logger.removeFilter(f)
